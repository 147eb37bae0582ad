"""The planner's file input: hourly tokens by kind, and LiteLLM's spend logs.

Every expected figure is worked out by hand from the rows in the comments
next to it, at the API prices below ($2.50 / $1.25 / $10.00 per 1M tokens).
"""

from __future__ import annotations

import csv
import io
import json
import tracemalloc
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from llm_cost_exporter.accounting.costmodel import ApiPrices
from llm_cost_exporter.tools.planner.advise import PlanError, advise
from llm_cost_exporter.tools.planner.csv_input import traffic_from_file, traffic_from_lines
from llm_cost_exporter.tools.planner.model import ALL_API, AS_RUN, FIXED, HYBRID, Knobs, Traffic
from llm_cost_exporter.tools.planner.replica import ReplicaSpec

PRICES = ApiPrices(input=2.50, cached_input=1.25, output=10.00)
REPLICA = ReplicaSpec(gpu_price=2.00, capacity=1000.0, gpu="L4")  # $2.60/h with 30% overhead
UTC = timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")
LITELLM = Path(__file__).parent / "fixtures" / "plan" / "litellm-spend-logs.csv"

HOURLY = """\
hour,model,prompt_tokens,cached_prompt_tokens,generation_tokens,api_cost
2025-03-03T09:00:00Z,chat,1000000,200000,100000,3.60
2025-03-03T09:00:00Z,code,400000,0,50000,1.45
2025-03-03T11:00:00Z,chat,2000000,1000000,300000,9.10
2025-03-03T11:00:00Z,chat,500000,0,0,1.25
"""


def read(text: str, zone=UTC, name: str = "traffic.csv", **period) -> Traffic:
    return traffic_from_lines(
        io.StringIO(text, newline=""),
        name=name,
        prices=PRICES,
        replica=REPLICA,
        zone=zone,
        currency="USD",
        **period,
    )


def figures(traffic: Traffic) -> list[tuple]:
    """Each hour as (local start, prompt, cached, generation, API cost, spend)."""
    return [
        (
            h.start.strftime("%m-%d %H:%M%z"),
            h.tokens_by_kind["prompt"],
            h.tokens_by_kind["cached_prompt"],
            h.tokens_by_kind["generation"],
            round(h.api_cost, 9),
            round(h.spend, 9),
        )
        for h in traffic.hours
    ]


def test_hourly_rows_become_contiguous_hours_with_the_bill() -> None:
    traffic = read(HOURLY)
    assert figures(traffic) == [
        # prompt 1.0M + 0.4M; API 1.4 x 2.50 + 0.2 x 1.25 + 0.15 x 10 = 5.25; billed 3.60 + 1.45
        ("03-03 09:00+0000", 1_400_000, 200_000, 150_000, 5.25, 5.05),
        ("03-03 10:00+0000", 0, 0, 0, 0.0, 0.0),  # no row: a real hour without traffic
        # the repeated (hour, model) adds up: 2.5 x 2.50 + 1.0 x 1.25 + 0.3 x 10; 9.10 + 1.25
        ("03-03 11:00+0000", 2_500_000, 1_000_000, 300_000, 10.50, 10.35),
    ]
    first = traffic.hours[0]
    assert first.tokens == 1_750_000
    assert first.replica_cost == pytest.approx(2.60)
    assert (first.replicas, first.capacity_tokens) == (0.0, 0.0)
    assert traffic.on_api and traffic.capacity == 1000.0 and traffic.currency == "USD"
    assert traffic.replica == REPLICA.describe("USD")
    assert traffic.tokens_by_model == {"chat": 5_100_000, "code": 450_000}
    assert traffic.source == "traffic.csv: hourly tokens"


def test_without_the_billed_column_as_run_is_the_list_price() -> None:
    text = "\n".join(line.rsplit(",", 1)[0] for line in HOURLY.splitlines())
    assert [(h.api_cost, h.spend) for h in read(text).hours] == [
        (5.25, 5.25),
        (0.0, 0.0),
        (10.50, 10.50),
    ]


def test_bom_crlf_blank_lines_any_column_order_and_an_empty_model() -> None:
    text = (
        "\ufeffmodel,generation_tokens,hour,cached_prompt_tokens,prompt_tokens\r\n"
        "\r\n"
        ",10,2025-03-03T09:00:00Z,0,100\r\n"
        "a,5,2025-03-03T09:00:00Z,20,0\r\n"
    )
    traffic = read(text)
    assert figures(traffic) == [
        # 100 x 2.50 + 20 x 1.25 + 15 x 10 = 425 per 1M
        ("03-03 09:00+0000", 100, 20, 15, 0.000425, 0.000425)
    ]
    assert traffic.tokens_by_model == {"": 110, "a": 25}


@pytest.mark.parametrize(
    ("stamp", "zone", "local"),
    [
        ("2025-03-03T09:00:00", BERLIN, "03-03 09:00+0100"),  # naive: the planner's zone
        ("2025-03-03T09:00:00Z", BERLIN, "03-03 10:00+0100"),
        ("2025-03-03 09:00+05:00", BERLIN, "03-03 05:00+0100"),
        ("2025-07-01T09:00:00Z", BERLIN, "07-01 11:00+0200"),  # summer time
        ("2025-03-03T09:00:00Z", ZoneInfo("America/New_York"), "03-03 04:00-0500"),
        # a half-hour zone: the UTC hour starts at 14:30 there, in the clock hour 14:00
        ("2025-03-03T09:00:00Z", ZoneInfo("Asia/Kolkata"), "03-03 14:00+0530"),
    ],
)
def test_hours_are_clock_hours_of_the_planners_zone(stamp: str, zone, local: str) -> None:
    text = f"hour,model,prompt_tokens,cached_prompt_tokens,generation_tokens\n{stamp},m,1,0,0\n"
    traffic = read(text, zone)
    assert [row[0] for row in figures(traffic)] == [local]
    assert traffic.zone == zone.key  # the week's hours are named in it


def test_hours_stay_contiguous_across_daylight_saving_changes() -> None:
    header = "hour,model,prompt_tokens,cached_prompt_tokens,generation_tokens\n"
    spring = header + "2025-03-30T01:00:00,m,1,0,0\n2025-03-30T04:00:00,m,1,0,0\n"
    # 02:00 does not exist that night in Berlin: 01:00, 03:00, 04:00
    assert [row[0] for row in figures(read(spring, BERLIN))] == [
        "03-30 01:00+0100",
        "03-30 03:00+0200",
        "03-30 04:00+0200",
    ]
    autumn = header + "2025-10-26T00:00:00Z,m,1,0,0\n2025-10-26T02:00:00Z,m,2,0,0\n"
    # 02:00 happens twice: 02:00+0200 (00:00Z) and 02:00+0100 (01:00Z)
    traffic = read(autumn, BERLIN)
    assert [row[0] for row in figures(traffic)] == [
        "10-26 02:00+0200",
        "10-26 02:00+0100",
        "10-26 03:00+0100",
    ]
    starts = [h.start.timestamp() for h in traffic.hours]
    assert [b - a for a, b in zip(starts, starts[1:], strict=False)] == [3600, 3600]


def test_a_period_adds_quiet_hours_and_leaves_rows_outside_out() -> None:
    start = datetime(2025, 3, 3, 8, tzinfo=UTC)
    traffic = read(HOURLY, start=start, end=datetime(2025, 3, 3, 11, tzinfo=UTC))
    assert figures(traffic) == [
        ("03-03 08:00+0000", 0, 0, 0, 0.0, 0.0),
        ("03-03 09:00+0000", 1_400_000, 200_000, 150_000, 5.25, 5.05),
        ("03-03 10:00+0000", 0, 0, 0, 0.0, 0.0),
    ]
    assert traffic.source == "traffic.csv: hourly tokens (2 rows outside the period left out)"
    assert figures(read(HOURLY, start=datetime(2025, 3, 3, 8))) == figures(
        read(HOURLY, start=start)
    )  # a naive bound is in the planner's zone
    later = read(HOURLY, start=datetime(2025, 3, 3, 10, tzinfo=UTC))
    assert [row[0] for row in figures(later)] == ["03-03 10:00+0000", "03-03 11:00+0000"]


# The fixture's requests, by the hour of Berlin (UTC+1) they started in:
#  09:00  08:02Z gpt-4o        1830 prompt of which 1536 cached, 212 out   $0.004775
#         08:17Z gpt-4o        2410 prompt, none cached, 388 out           $0.009905
#         08:40Z claude        3120 prompt of which 3000 read from cache,  $0.00801
#                              450 out
#         08:55Z gpt-4o        failed (status failure): left out
#  10:00  09:05Z gpt-4o        answered from LiteLLM's cache: no tokens    $0
#         09:31Z gpt-4o        5120 prompt of which 4096 cached, 96 out    $0.00864
#         09:59:59.999Z mini   800 prompt, 150 out                         $0.00021
#  11:00  no request
#  12:00  11:00Z gpt-4o        older proxy: cache figures only in          $0.00547
#                              additional_usage_values: 1500 / 1024, 300 out
#         11:20Z embedding     640 prompt                                  $0.0000128
#         11:47Z gpt-4o        3000 prompt of which 2048 cached, 700 out   $0.01194
#  13:00  12:03Z claude        3500 prompt (1500 written to the cache,     $0.016425
#                              none read), 320 out
#         12:44Z gpt-4o        900 prompt, 120 out                         $0.00345
LITELLM_HOURS = [
    # prompt 294 + 2410 + 120, cached 1536 + 3000, out 212 + 388 + 450
    # API (2824 x 2.50 + 4536 x 1.25 + 1050 x 10) / 1M; spend 0.004775 + 0.009905 + 0.00801
    ("03-03 09:00+0100", 2824, 4536, 1050, 0.02323, 0.02269),
    # prompt 1024 + 800, cached 4096, out 96 + 150; API 4560 + 5120 + 2460
    ("03-03 10:00+0100", 1824, 4096, 246, 0.01214, 0.00885),
    ("03-03 11:00+0100", 0, 0, 0, 0.0, 0.0),
    # prompt 476 + 640 + 952, cached 1024 + 2048, out 300 + 700; API 5170 + 3840 + 10000
    ("03-03 12:00+0100", 2068, 3072, 1000, 0.01901, 0.0174228),
    # prompt 3500 + 900, out 320 + 120; API 11000 + 4400
    ("03-03 13:00+0100", 4400, 0, 440, 0.0154, 0.019875),
]


def test_litellm_spend_logs_csv() -> None:
    traffic = read(LITELLM.read_text(encoding="utf-8"), BERLIN, name=LITELLM.name)
    assert figures(traffic) == LITELLM_HOURS
    assert traffic.source == (
        "litellm-spend-logs.csv: LiteLLM spend logs, 10 requests "
        "(1 failed, 1 answered from LiteLLM's cache left out)"
    )
    assert traffic.tokens_by_model == {
        "gpt-4o-2024-08-06": 2042 + 2798 + 5216 + 1800 + 3700 + 1020,
        "claude-3-5-sonnet-20241022": 3570 + 3820,
        "gpt-4o-mini-2024-07-18": 950,
        "text-embedding-3-small": 640,
    }
    assert traffic.on_api


def test_litellm_streamed_from_the_file_is_the_same() -> None:
    traffic = traffic_from_file(
        LITELLM, prices=PRICES, replica=REPLICA, zone=BERLIN, currency="USD"
    )
    assert figures(traffic) == LITELLM_HOURS


def _fixture_rows() -> list[dict]:
    """The fixture's rows the way the proxy's JSON gives them: numbers, metadata an object."""
    rows = []
    with LITELLM.open(encoding="utf-8", newline="") as stream:
        for row in csv.DictReader(stream):
            item: dict = dict(row)
            for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
                item[key] = int(row[key])
            item["spend"] = float(row["spend"])
            item["metadata"] = json.loads(row["metadata"])
            start = datetime.fromisoformat(row["startTime"]).replace(tzinfo=UTC)
            item["startTime"] = start.isoformat()
            item["status"] = row["status"] or None
            rows.append(item)
    return rows


@pytest.mark.parametrize("envelope", ["list", "v2"])
def test_litellm_spend_logs_json(envelope: str) -> None:
    rows = _fixture_rows()
    document = rows if envelope == "list" else {"data": rows, "total": len(rows), "page": 1}
    traffic = read(json.dumps(document, indent=2), BERLIN, name="logs.json")
    assert figures(traffic) == LITELLM_HOURS
    assert traffic.source.startswith("logs.json: LiteLLM spend logs, 10 requests")


LITELLM_NARROW = "startTime,model,prompt_tokens,completion_tokens,spend"


def test_litellm_without_metadata_counts_no_cached_token_and_says_so() -> None:
    text = (
        f"{LITELLM_NARROW}\n"
        "2025-03-03 08:02:11.204,gpt-4o,1830,212,0.004775\n"
        "2025-03-03T08:59:00+01:00,gpt-4o,1000,0,0.0025\n"
    )
    traffic = read(text)
    # the second request started at 07:59 UTC; 1830 x 2.50 + 212 x 10 = 6695 per 1M
    assert figures(traffic) == [
        ("03-03 07:00+0000", 1000, 0, 0, 0.0025, 0.0025),
        ("03-03 08:00+0000", 1830, 0, 212, 0.006695, 0.004775),
    ]
    assert traffic.source == (
        "traffic.csv: LiteLLM spend logs, 2 requests; "
        "no cached prompt tokens recorded: every prompt token priced as uncached"
    )


def test_litellm_status_cache_hits_and_older_failures() -> None:
    failed_metadata = json.dumps({"status": "failure", "usage_object": None}).replace('"', '""')
    text = (
        f"{LITELLM_NARROW},status,cache_hit,metadata\n"
        "2025-03-03 08:00:01,m,100,10,0.01,success,False,{}\n"
        "2025-03-03 08:00:02,m,100,10,0.01,failure,False,{}\n"
        # an older proxy kept the status only in the metadata
        f'2025-03-03 08:00:03,m,100,10,0.01,,,"{failed_metadata}"\n'
        # answered from LiteLLM's cache: the tokens reached no model, what was billed counts
        "2025-03-03 08:00:04,m,100,10,0.5,success,True,{}\n"
    )
    traffic = read(text)
    assert figures(traffic) == [("03-03 08:00+0000", 100, 0, 10, 0.00035, 0.51)]
    assert traffic.source == (
        "traffic.csv: LiteLLM spend logs, 1 request "
        "(2 failed, 1 answered from LiteLLM's cache left out); "
        "no cached prompt tokens recorded: every prompt token priced as uncached"
    )


def test_advice_from_a_parsed_file() -> None:
    advice = advise(read(HOURLY), Knobs(ceiling=0.8, floor=1, min_run=1))
    # One replica serves 1000 x 3600 x 0.8 = 2.88M tokens an hour. The busiest hour
    # (3.8M) needs 2: the fixed fleet keeps 2 for 3 hours at $2.60.
    assert advice.fleet_size == 2
    assert round(advice.outcome(FIXED).cost, 2) == 15.60
    assert round(advice.outcome(ALL_API).cost, 2) == 15.75  # 5.25 + 0 + 10.50
    assert round(advice.outcome(AS_RUN).cost, 2) == 15.40  # the bill: 5.05 + 0 + 10.35
    # Hour by hour: 09:00 one replica ($2.60, saves $5.25); 10:00 the floor's one ($2.60);
    # 11:00 one replica and 0.92M tokens to the API at $10.50 / 3.8M: $2.60 + $2.54.
    assert round(advice.outcome(HYBRID).cost, 2) == round(2.60 * 3 + 0.92 * 10.50 / 3.8, 2)
    assert advice.on_api and advice.source == "traffic.csv: hourly tokens"


H = "hour,model,prompt_tokens,cached_prompt_tokens,generation_tokens"
ACCEPTED = (
    "expected hourly tokens (hour,model,prompt_tokens,cached_prompt_tokens,"
    "generation_tokens[,api_cost]) or LiteLLM spend logs "
    "(startTime,model,prompt_tokens,completion_tokens,spend,...)"
)
TIMESTAMP = "expected an ISO 8601 timestamp such as 2025-03-03T14:00:00Z"
METADATA_CACHED = json.dumps({"usage_object": {"prompt_tokens_details": {"cached_tokens": 9}}})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", f"traffic.csv: empty file: {ACCEPTED}"),
        ("\ufeff\r\n  \n", f"traffic.csv: empty file: {ACCEPTED}"),
        ("time,tokens\n2025-03-03T09:00Z,5\n", f"traffic.csv line 1: unknown header: {ACCEPTED}"),
        ("\r\n\r\ntime,tokens\r\n", f"traffic.csv line 3: unknown header: {ACCEPTED}"),
        (f"{H}\n", "traffic.csv: no data rows after the header"),
        (f"{H}\n\n\n", "traffic.csv: no data rows after the header"),
        (
            f"{H}\n2025-03-03T09:00Z,m,1,0,0\n03/03/2025 10:00,m,1,0,0\n",
            f"traffic.csv line 3: hour: {TIMESTAMP}, got '03/03/2025 10:00'",
        ),
        (
            f"{H}\n2025-03-03T09:30:00Z,m,1,0,0\n",
            "traffic.csv line 2: hour: expected the start of an hour, got '2025-03-03T09:30:00Z'",
        ),
        (
            f"{H}\n2025-03-03T09:00Z,m,abc,0,0\n",
            "traffic.csv line 2: prompt_tokens: expected a number of tokens, got 'abc'",
        ),
        (
            f"{H}\n2025-03-03T09:00Z,m,1,-5,0\n",
            "traffic.csv line 2: cached_prompt_tokens: expected a number of tokens, got '-5'",
        ),
        (
            f"{H}\n2025-03-03T09:00Z,m,1,0,nan\n",
            "traffic.csv line 2: generation_tokens: expected a number of tokens, got 'nan'",
        ),
        (
            f"{H}\n2025-03-03T09:00Z,m,inf,0,0\n",
            "traffic.csv line 2: prompt_tokens: expected a number of tokens, got 'inf'",
        ),
        (
            f"{H}\n2025-03-03T09:00Z,m,,0,0\n",
            "traffic.csv line 2: prompt_tokens: expected a number of tokens, got ''",
        ),
        (
            f"{H},api_cost\n2025-03-03T09:00Z,m,1,0,0,$4\n",
            "traffic.csv line 2: api_cost: expected an amount of money, got '$4'",
        ),
        (
            f"{H}\n2025-03-03T09:00Z,m,1,0\n",
            "traffic.csv line 2: expected 5 fields as in the header, got 4",
        ),
        (
            f"{H},api_cots\n",
            "traffic.csv line 1: unknown column 'api_cots': the hourly format has hour, model, "
            "prompt_tokens, cached_prompt_tokens, generation_tokens and optionally api_cost",
        ),
        (f"{H},model\n", "traffic.csv line 1: column 'model' twice"),
        (
            "hour,model,prompt_tokens\n",
            "traffic.csv line 1: hourly tokens without the column(s) "
            "cached_prompt_tokens, generation_tokens",
        ),
        (
            f'{H}\n2025-03-03T09:00Z,m,1,0,0\n2025-03-03T10:00Z,"m,1,0,0\n\n\n',
            "traffic.csv line 3: not valid CSV: unexpected end of data",
        ),
        (
            f"{H}\n2025-03-03T09:00Z,m,1,0,0\n2026-05-01T09:00Z,m,1,0,0\n",
            "traffic.csv line 3: hour: 2026-05-01T09:00:00+00:00 is more than 400 days from "
            "the row at 2025-03-03T09:00:00+00:00; the planner reads at most 400 days: "
            "give a period to read part of the file",
        ),
        (
            "startTime,model,prompt_tokens,spend\n",
            "traffic.csv line 1: LiteLLM spend logs without the column completion_tokens "
            "(needed: startTime, model, prompt_tokens, completion_tokens, spend)",
        ),
        (
            f"{LITELLM_NARROW}\n2025-03-03 08:00:01,m,1,1,0.1\nyesterday,m,1,1,0.1\n",
            f"traffic.csv line 3: startTime: {TIMESTAMP}, got 'yesterday'",
        ),
        (
            f"{LITELLM_NARROW}\n2025-03-03 08:00:01,m,1,1,NULL\n",
            "traffic.csv line 2: spend: expected an amount of money, got 'NULL'",
        ),
        (
            f"{LITELLM_NARROW}\n2025-03-03 08:00:01,m,1,1.5e400,0.1\n",
            "traffic.csv line 2: completion_tokens: expected a number of tokens, got '1.5e400'",
        ),
        (
            f"{LITELLM_NARROW},status\n2025-03-03 08:00:01,m,1,1,0.1,pending\n",
            "traffic.csv line 2: status: expected success or failure, got 'pending'",
        ),
        (
            f"{LITELLM_NARROW},status\n2025-03-03 08:00:01,m,1,1,0,failure\n"
            "2025-03-03 08:00:02,m,1,1,0,failure\n",
            "traffic.csv: no successful request (2 failed)",
        ),
        (
            f"{LITELLM_NARROW},metadata\n"
            f'2025-03-03 08:00:01,m,5,1,0.1,"{METADATA_CACHED.replace(chr(34), 2 * chr(34))}"\n',
            "traffic.csv line 2: metadata: 9 cached prompt tokens, "
            "more than prompt_tokens (5) which include them",
        ),
        (
            f'{LITELLM_NARROW},metadata\n2025-03-03 08:00:01,m,5,1,0.1,"{{""cached_tokens"": 1"\n',
            "traffic.csv line 2: metadata: expected a JSON object, got '{\"cached_tokens\": 1'",
        ),
        (
            f"{LITELLM_NARROW},metadata\n2025-03-03 08:00:01,m,5,1,0.1,"
            '"{""usage_object"": {""prompt_tokens_details"": {""cached_tokens"": ""x""}}}"\n',
            "traffic.csv line 2: metadata usage_object.prompt_tokens_details.cached_tokens: "
            "expected a number of tokens, got 'x'",
        ),
        ("[", "traffic.csv: not valid JSON: Expecting value: line 1 column 2 (char 1)"),
        (
            '{"rows": []}',
            "traffic.csv: expected LiteLLM spend logs: a JSON list of rows, or rows under 'data'",
        ),
        ("[]", "traffic.csv: no data rows after the header"),
        ("[1]", "traffic.csv row 1: expected a JSON object, got int"),
        (
            # /spend/logs with dates and without summarize=false: totals by day
            '[{"startTime": "2025-03-03", "spend": 1.5, "users": {"u": 1.5}, '
            '"models": {"gpt-4o": 1.5}}]',
            "traffic.csv row 1: spend summed by day, not one row per request: "
            "ask /spend/logs with summarize=false",
        ),
        (
            '[{"startTime": "2025-03-03T08:00:00Z", "model": "m", "prompt_tokens": 1}]',
            "traffic.csv row 1: no completion_tokens, spend",
        ),
        (
            '[{"startTime": "2025-03-03T08:00:00Z", "model": "m", "prompt_tokens": true, '
            '"completion_tokens": 1, "spend": 0}]',
            "traffic.csv row 1: prompt_tokens: expected a number of tokens, got True",
        ),
        (
            '[{"startTime": "2025-03-03T08:00:00Z", "model": "m", "prompt_tokens": 1, '
            f'"completion_tokens": 1{"0" * 400}, "spend": 0}}]',
            f"traffic.csv row 1: completion_tokens: expected a number of tokens, got 1{'0' * 400}",
        ),
    ],
)
def test_bad_input_is_one_line_naming_file_line_and_column(text: str, message: str) -> None:
    with pytest.raises(PlanError) as raised:
        read(text)
    assert str(raised.value) == message
    assert "\n" not in str(raised.value)


def test_a_period_without_rows_and_a_period_too_long() -> None:
    with pytest.raises(PlanError, match=r"^traffic.csv: no row in the period asked for \(4 rows"):
        read(HOURLY, start=datetime(2025, 4, 1, tzinfo=UTC), end=datetime(2025, 5, 1, tzinfo=UTC))
    with pytest.raises(PlanError, match="^traffic.csv: the period is longer than the 400 days"):
        read(HOURLY, start=datetime(2024, 1, 1, tzinfo=UTC), end=datetime(2025, 5, 1, tzinfo=UTC))


def test_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "traffic.csv"
    path.write_bytes(f"{H}\n2025-03-03T09:00Z,caf\xe9,1,0,0\n".encode("latin-1"))
    with pytest.raises(PlanError, match=r"^traffic.csv: not UTF-8 text \(invalid"):
        traffic_from_file(path, prices=PRICES, replica=REPLICA, zone=UTC, currency="USD")


def test_a_file_with_a_bom_is_read(tmp_path: Path) -> None:
    path = tmp_path / "hourly.csv"
    path.write_text(HOURLY.replace("\n", "\r\n"), encoding="utf-8-sig")
    traffic = traffic_from_file(path, prices=PRICES, replica=REPLICA, zone=UTC, currency="USD")
    assert figures(traffic) == figures(read(HOURLY))


def _requests(count: int) -> Iterator[str]:
    """One request a second, generated as read: the rows are never all in memory."""
    yield f"{LITELLM_NARROW},status\n"
    start = datetime(2025, 3, 3, tzinfo=UTC)
    for second in range(count):
        stamp = (start + timedelta(seconds=second)).strftime("%Y-%m-%d %H:%M:%S")
        yield f"{stamp},m{second % 3},{100 + second % 7},{second % 5},0.0001,success\n"


def test_rows_are_streamed_not_held() -> None:
    count = 12_000  # 3 h 20 min of one request a second; ~0.7 MB of text
    tracemalloc.start()
    try:
        traffic = traffic_from_lines(
            _requests(count), name="big.csv", prices=PRICES, replica=REPLICA, zone=UTC,
            currency="USD",
        )  # fmt: skip
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(traffic.hours) == 4
    assert traffic.hours[0].tokens_by_kind["prompt"] == sum(100 + s % 7 for s in range(3600))
    assert sum(h.tokens_by_kind["generation"] for h in traffic.hours) == sum(
        s % 5 for s in range(count)
    )
    assert sum(h.spend for h in traffic.hours) == pytest.approx(count * 0.0001)
    assert peak < 256 * 1024, f"peak {peak:,} bytes: rows are being held"
