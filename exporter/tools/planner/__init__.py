"""The planner: what would have been cheaper, from the traffic a team really had."""
