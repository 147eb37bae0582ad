/*
 * A stand-in libnvidia-ml.so.1 for tests on machines without a GPU.
 *
 * It exports the NVML entry points the exporter uses, with NVML's struct
 * layouts and return codes, so the real pynvml bindings can load it through
 * ctypes. What it reports is steered by a text state file named by the
 * FAKE_NVML_STATE environment variable ("key = value" lines, written by
 * tests/realparts/fake_nvml.py). The variable is read on every call and the
 * file is re-parsed whenever its mtime, size or inode changes, so a test can
 * change the "hardware" under a running process.
 *
 * Choices where the fake has to pick a behaviour:
 *  - nvmlInit/nvmlShutdown are reference counted as in real NVML: the library
 *    is usable until every successful init has been matched by a shutdown.
 *  - If the state file disappears after a successful init, the last parsed
 *    state stays in force; only init insists on the file being there.
 *  - nvmlDeviceGetGpuInstanceId on a full GPU returns INVALID_ARGUMENT.
 *  - nvmlDeviceGetMigDeviceHandleByIndex returns INVALID_ARGUMENT for an index
 *    >= 7 (no such slot) and NOT_FOUND for an empty slot or MIG mode off.
 *  - Clock info answers for NVML_CLOCK_GRAPHICS and NVML_CLOCK_SM (both report
 *    sm_clock_mhz); MEM and VIDEO clocks return NOT_SUPPORTED.
 *  - The v1 memory struct reports used = used + reserved, as real NVML does.
 *  - A per-GPU not_supported list applies to every call on the GPU's handle
 *    or its MIG handles, and to handle lookups that resolve to them; a
 *    failing list does the same with NVML_ERROR_UNKNOWN.
 *  - Real GPM wants samples at least 100 ms apart; the fake does not check.
 *
 * Older drivers: each entry point carries the driver branch whose nvml.h first
 * declared it (NVIDIA's headers per CUDA release). Compiled with
 * -DFAKE_NVML_BRANCH=<n>, the library does not export what branch n lacks, so
 * pynvml's symbol lookup fails exactly as on that driver and raises
 * NVML_ERROR_FUNCTION_NOT_FOUND. Only one fake can serve pynvml in a process,
 * so for tests in the test process itself a state file's driver_branch makes
 * the same entry points answer NVML_ERROR_FUNCTION_NOT_FOUND instead, which
 * pynvml raises as the same exception.
 */

#define _POSIX_C_SOURCE 200809L

#include <ctype.h>
#include <locale.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define EXPORT __attribute__((visibility("default")))

typedef int nvmlReturn_t;

enum {
    NVML_SUCCESS = 0,
    NVML_ERROR_UNINITIALIZED = 1,
    NVML_ERROR_INVALID_ARGUMENT = 2,
    NVML_ERROR_NOT_SUPPORTED = 3,
    NVML_ERROR_NO_PERMISSION = 4,
    NVML_ERROR_NOT_FOUND = 6,
    NVML_ERROR_INSUFFICIENT_SIZE = 7,
    NVML_ERROR_DRIVER_NOT_LOADED = 9,
    NVML_ERROR_FUNCTION_NOT_FOUND = 13,
    NVML_ERROR_GPU_IS_LOST = 15,
    NVML_ERROR_ARGUMENT_VERSION_MISMATCH = 25,
    NVML_ERROR_UNKNOWN = 999,
};

/* The first driver branch whose nvml.h declares each newer entry point. */
#define SINCE_ALWAYS 0
#define SINCE_MEMORY_V2 510          /* CUDA 11.6 */
#define SINCE_GPM 520                /* CUDA 11.8 */
#define SINCE_CLOCKS_EVENT_REASONS 535 /* CUDA 12.2 */
#define SINCE_TEMPERATURE_V 570      /* CUDA 12.8 */
#define OLDEST_BRANCH 450            /* CUDA 11.0: MIG; the oldest branch emulated */

#ifndef FAKE_NVML_BRANCH
#define FAKE_NVML_BRANCH 9999 /* every entry point */
#endif
_Static_assert(FAKE_NVML_BRANCH >= OLDEST_BRANCH, "the fake emulates R450 and newer");

#define MAX_GPUS 16
#define MAX_MIGS 7
#define STR_LEN 96
#define DRIVER_VERSION_LEN 80

#define NVML_TEMPERATURE_GPU 0
#define NVML_CLOCK_GRAPHICS 0
#define NVML_CLOCK_SM 1
#define NVML_CLOCK_COUNT 4

#define NVML_MEMORY_V2_VERSION ((unsigned int)(sizeof(nvmlMemory_v2_t) | (2u << 24)))
#define NVML_TEMPERATURE_V1_VERSION ((unsigned int)(sizeof(nvmlTemperature_v1_t) | (1u << 24)))
#define NVML_GPM_SUPPORT_VERSION 1u
#define NVML_GPM_METRICS_GET_VERSION 1u
#define NVML_GPM_METRIC_GRAPHICS_UTIL 1u
#define NVML_GPM_METRIC_SM_UTIL 2u
#define NVML_GPM_METRIC_SM_OCCUPANCY 3u
#define NVML_GPM_METRIC_ANY_TENSOR_UTIL 5u
/* The smallest metrics[] array any supported pynvml (>= 12.535) allocates;
 * numMetrics above it is rejected so the fake never writes past the caller's
 * struct. */
#define GPM_METRICS_CAP 98u

/* ---- NVML ABI structs ---------------------------------------------------- */

typedef struct {
    unsigned long long total;
    unsigned long long free;
    unsigned long long used;
} nvmlMemory_t;

typedef struct {
    unsigned int version;
    unsigned long long total;
    unsigned long long reserved;
    unsigned long long free;
    unsigned long long used;
} nvmlMemory_v2_t;

typedef struct {
    unsigned int gpu;
    unsigned int memory;
} nvmlUtilization_t;

typedef struct {
    unsigned int version;
    unsigned int sensorType;
    int temperature;
} nvmlTemperature_v1_t;

typedef struct {
    unsigned int version;
    unsigned int isSupportedDevice;
} nvmlGpmSupport_t;

typedef struct fake_gpm_sample *nvmlGpmSample_t;

typedef struct {
    unsigned int metricId;
    nvmlReturn_t nvmlReturn;
    double value;
    struct {
        const char *shortName;
        const char *longName;
        const char *unit;
    } metricInfo;
} nvmlGpmMetric_t;

typedef struct {
    unsigned int version;
    unsigned int numMetrics;
    nvmlGpmSample_t sample1;
    nvmlGpmSample_t sample2;
    nvmlGpmMetric_t metrics[];
} nvmlGpmMetricsGet_t;

_Static_assert(sizeof(nvmlMemory_v2_t) == 40, "nvmlMemory_v2_t layout");
_Static_assert(sizeof(nvmlTemperature_v1_t) == 12, "nvmlTemperature_v1_t layout");
_Static_assert(sizeof(nvmlGpmMetric_t) == 40, "nvmlGpmMetric_t layout");
_Static_assert(sizeof(nvmlGpmMetricsGet_t) == 24, "nvmlGpmMetricsGet_t header layout");

/* ---- handles ------------------------------------------------------------- */

struct fake_device {
    unsigned int gpu;
    int mig; /* -1 for a full GPU */
};
typedef struct fake_device *nvmlDevice_t;

static struct fake_device gpu_handles[MAX_GPUS];
static struct fake_device mig_handles[MAX_GPUS][MAX_MIGS];

__attribute__((constructor)) static void init_handles(void)
{
    for (unsigned int i = 0; i < MAX_GPUS; i++) {
        gpu_handles[i].gpu = i;
        gpu_handles[i].mig = -1;
        for (unsigned int j = 0; j < MAX_MIGS; j++) {
            mig_handles[i][j].gpu = i;
            mig_handles[i][j].mig = (int)j;
        }
    }
}

static int is_known_handle(nvmlDevice_t d)
{
    uintptr_t p = (uintptr_t)d;
    uintptr_t g0 = (uintptr_t)gpu_handles, g1 = (uintptr_t)(gpu_handles + MAX_GPUS);
    uintptr_t m0 = (uintptr_t)mig_handles, m1 = (uintptr_t)(mig_handles + MAX_GPUS);
    if (p >= g0 && p < g1)
        return (p - g0) % sizeof(struct fake_device) == 0;
    if (p >= m0 && p < m1)
        return (p - m0) % sizeof(struct fake_device) == 0;
    return 0;
}

struct fake_gpm_sample {
    unsigned int magic;
    int filled;
    unsigned int gpu;
    struct timespec taken;
    unsigned int util_gpu;
    double sm_activity;
    double sm_occupancy;
    double tensor_activity;
};
#define GPM_SAMPLE_MAGIC 0x47504d53u

/* ---- call counters ------------------------------------------------------- */

#define FAKE_FUNCTIONS(X)                                                                          \
    X(nvmlInit_v2, SINCE_ALWAYS)                                                                   \
    X(nvmlInitWithFlags, SINCE_ALWAYS)                                                             \
    X(nvmlShutdown, SINCE_ALWAYS)                                                                  \
    X(nvmlErrorString, SINCE_ALWAYS)                                                               \
    X(nvmlSystemGetDriverVersion, SINCE_ALWAYS)                                                    \
    X(nvmlDeviceGetCount_v2, SINCE_ALWAYS)                                                         \
    X(nvmlDeviceGetHandleByIndex_v2, SINCE_ALWAYS)                                                 \
    X(nvmlDeviceGetHandleByUUID, SINCE_ALWAYS)                                                     \
    X(nvmlDeviceGetName, SINCE_ALWAYS)                                                             \
    X(nvmlDeviceGetUUID, SINCE_ALWAYS)                                                             \
    X(nvmlDeviceGetIndex, SINCE_ALWAYS)                                                            \
    X(nvmlDeviceGetUtilizationRates, SINCE_ALWAYS)                                                 \
    X(nvmlDeviceGetMemoryInfo, SINCE_ALWAYS)                                                       \
    X(nvmlDeviceGetMemoryInfo_v2, SINCE_MEMORY_V2)                                                 \
    X(nvmlDeviceGetPowerUsage, SINCE_ALWAYS)                                                       \
    X(nvmlDeviceGetTotalEnergyConsumption, SINCE_ALWAYS)                                           \
    X(nvmlDeviceGetTemperature, SINCE_ALWAYS)                                                      \
    X(nvmlDeviceGetTemperatureV, SINCE_TEMPERATURE_V)                                              \
    X(nvmlDeviceGetClockInfo, SINCE_ALWAYS)                                                        \
    X(nvmlDeviceGetCurrentClocksEventReasons, SINCE_CLOCKS_EVENT_REASONS)                          \
    X(nvmlDeviceGetCurrentClocksThrottleReasons, SINCE_ALWAYS)                                     \
    X(nvmlDeviceGetMigMode, SINCE_ALWAYS)                                                          \
    X(nvmlDeviceGetMaxMigDeviceCount, SINCE_ALWAYS)                                                \
    X(nvmlDeviceGetMigDeviceHandleByIndex, SINCE_ALWAYS)                                           \
    X(nvmlDeviceIsMigDeviceHandle, SINCE_ALWAYS)                                                   \
    X(nvmlDeviceGetGpuInstanceId, SINCE_ALWAYS)                                                    \
    X(nvmlGpmQueryDeviceSupport, SINCE_GPM)                                                        \
    X(nvmlGpmSampleAlloc, SINCE_GPM)                                                               \
    X(nvmlGpmSampleFree, SINCE_GPM)                                                                \
    X(nvmlGpmSampleGet, SINCE_GPM)                                                                 \
    X(nvmlGpmMigSampleGet, SINCE_GPM)                                                              \
    X(nvmlGpmMetricsGet, SINCE_GPM)

#define AS_ENUM(name, since) FN_##name,
#define AS_NAME(name, since) #name,
#define AS_SINCE(name, since) since,
enum fake_function { FAKE_FUNCTIONS(AS_ENUM) FN_COUNT };
static const char *const function_names[FN_COUNT] = {FAKE_FUNCTIONS(AS_NAME)};
static const unsigned int function_since[FN_COUNT] = {FAKE_FUNCTIONS(AS_SINCE)};
_Static_assert(FN_COUNT <= 64, "not_supported masks are 64-bit");

static _Atomic unsigned long long call_counts[FN_COUNT];

static int function_index(const char *name, size_t len)
{
    for (int i = 0; i < FN_COUNT; i++)
        if (strlen(function_names[i]) == len && strncmp(function_names[i], name, len) == 0)
            return i;
    return -1;
}

EXPORT unsigned long long fakeNvmlCallCount(const char *function_name)
{
    if (function_name == NULL)
        return 0;
    int i = function_index(function_name, strlen(function_name));
    return i < 0 ? 0 : atomic_load_explicit(&call_counts[i], memory_order_relaxed);
}

/* The driver branch that first has `function_name`; -1 for a name the fake lacks. */
EXPORT int fakeNvmlFunctionSince(const char *function_name)
{
    if (function_name == NULL)
        return -1;
    int i = function_index(function_name, strlen(function_name));
    return i < 0 ? -1 : (int)function_since[i];
}

EXPORT void fakeNvmlResetCallCounts(void)
{
    for (int i = 0; i < FN_COUNT; i++)
        atomic_store_explicit(&call_counts[i], 0, memory_order_relaxed);
}

/* ---- state --------------------------------------------------------------- */

struct mig_state {
    char uuid[STR_LEN];
    unsigned int gpu_instance_id;
    unsigned long long memory_total;
    unsigned long long memory_used;
};

struct gpu_state {
    char name[STR_LEN];
    char uuid[STR_LEN];
    unsigned int util_gpu;
    unsigned int util_memory;
    unsigned long long memory_total;
    unsigned long long memory_used;
    unsigned long long memory_reserved;
    unsigned int power_mw;
    unsigned long long energy_mj;
    int temperature;
    unsigned int sm_clock_mhz;
    unsigned long long clock_event_reasons;
    int gpm_supported;
    double sm_activity;
    double sm_occupancy;
    double tensor_activity;
    int mig_mode;
    unsigned int mig_count;
    int lost;
    uint64_t not_supported;
    uint64_t failing;
    struct mig_state migs[MAX_MIGS];
};

struct fake_state {
    int init_error;
    unsigned int driver_branch; /* 0: every entry point answers */
    unsigned int init_delay_ms;
    char driver_version[DRIVER_VERSION_LEN];
    unsigned int device_count;
    struct gpu_state gpus[MAX_GPUS];
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct fake_state state;   /* live state, guarded by lock */
static struct fake_state scratch; /* parse target, guarded by lock */
static int have_state;
static unsigned int init_refcount;
static char loaded_path[4096];
static struct stat loaded_stat;

static void copy_str(char *dst, size_t size, const char *src)
{
    size_t n = strlen(src);
    if (n >= size)
        n = size - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static unsigned long long parse_u64(const char *v)
{
    if (v[0] == '0' && (v[1] == 'x' || v[1] == 'X'))
        return strtoull(v + 2, NULL, 16);
    return strtoull(v, NULL, 10);
}

static double parse_double(const char *v)
{
    /* Doubles are written with '.', whatever LC_NUMERIC the host process set. */
    static locale_t c_locale;
    if (c_locale == (locale_t)0)
        c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
    locale_t previous = c_locale ? uselocale(c_locale) : (locale_t)0;
    double d = strtod(v, NULL);
    if (previous)
        uselocale(previous);
    return d;
}

static uint64_t parse_function_list(const char *v)
{
    uint64_t mask = 0;
    while (*v) {
        while (*v == ',' || isspace((unsigned char)*v))
            v++;
        const char *start = v;
        while (*v && *v != ',' && !isspace((unsigned char)*v))
            v++;
        int i = function_index(start, (size_t)(v - start));
        if (i >= 0)
            mask |= (uint64_t)1 << i;
    }
    return mask;
}

/* Reads "<n>." off *p; returns -1 if absent or >= limit. */
static int take_index(const char **p, unsigned int limit)
{
    char *end;
    if (!isdigit((unsigned char)**p))
        return -1;
    unsigned long n = strtoul(*p, &end, 10);
    if (*end != '.' || n >= limit)
        return -1;
    *p = end + 1;
    return (int)n;
}

static void apply_mig_key(struct mig_state *m, const char *k, const char *v)
{
    if (strcmp(k, "uuid") == 0)
        copy_str(m->uuid, sizeof m->uuid, v);
    else if (strcmp(k, "gpu_instance_id") == 0)
        m->gpu_instance_id = (unsigned int)parse_u64(v);
    else if (strcmp(k, "memory_total") == 0)
        m->memory_total = parse_u64(v);
    else if (strcmp(k, "memory_used") == 0)
        m->memory_used = parse_u64(v);
}

static void apply_gpu_key(struct gpu_state *g, const char *k, const char *v)
{
    if (strncmp(k, "mig.", 4) == 0) {
        const char *rest = k + 4;
        int j = take_index(&rest, MAX_MIGS);
        if (j >= 0)
            apply_mig_key(&g->migs[j], rest, v);
    } else if (strcmp(k, "name") == 0) {
        copy_str(g->name, sizeof g->name, v);
    } else if (strcmp(k, "uuid") == 0) {
        copy_str(g->uuid, sizeof g->uuid, v);
    } else if (strcmp(k, "util_gpu") == 0) {
        g->util_gpu = (unsigned int)parse_u64(v);
    } else if (strcmp(k, "util_memory") == 0) {
        g->util_memory = (unsigned int)parse_u64(v);
    } else if (strcmp(k, "memory_total") == 0) {
        g->memory_total = parse_u64(v);
    } else if (strcmp(k, "memory_used") == 0) {
        g->memory_used = parse_u64(v);
    } else if (strcmp(k, "memory_reserved") == 0) {
        g->memory_reserved = parse_u64(v);
    } else if (strcmp(k, "power_mw") == 0) {
        g->power_mw = (unsigned int)parse_u64(v);
    } else if (strcmp(k, "energy_mj") == 0) {
        g->energy_mj = parse_u64(v);
    } else if (strcmp(k, "temperature") == 0) {
        g->temperature = (int)strtol(v, NULL, 10);
    } else if (strcmp(k, "sm_clock_mhz") == 0) {
        g->sm_clock_mhz = (unsigned int)parse_u64(v);
    } else if (strcmp(k, "clock_event_reasons") == 0) {
        g->clock_event_reasons = parse_u64(v);
    } else if (strcmp(k, "gpm_supported") == 0) {
        g->gpm_supported = parse_u64(v) != 0;
    } else if (strcmp(k, "sm_activity") == 0) {
        g->sm_activity = parse_double(v);
    } else if (strcmp(k, "sm_occupancy") == 0) {
        g->sm_occupancy = parse_double(v);
    } else if (strcmp(k, "tensor_activity") == 0) {
        g->tensor_activity = parse_double(v);
    } else if (strcmp(k, "mig_mode") == 0) {
        g->mig_mode = parse_u64(v) != 0;
    } else if (strcmp(k, "mig_count") == 0) {
        unsigned long long n = parse_u64(v);
        g->mig_count = n > MAX_MIGS ? MAX_MIGS : (unsigned int)n;
    } else if (strcmp(k, "lost") == 0) {
        g->lost = parse_u64(v) != 0;
    } else if (strcmp(k, "not_supported") == 0) {
        g->not_supported = parse_function_list(v);
    } else if (strcmp(k, "failing") == 0) {
        g->failing = parse_function_list(v);
    }
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *end = s + strlen(s);
    while (end > s && isspace((unsigned char)end[-1]))
        *--end = '\0';
    return s;
}

static void apply_line(struct fake_state *s, char *line)
{
    char *t = trim(line);
    if (*t == '\0' || *t == '#')
        return;
    char *eq = strchr(t, '=');
    if (eq == NULL)
        return;
    *eq = '\0';
    const char *key = trim(t);
    const char *value = trim(eq + 1);

    if (strcmp(key, "init_error") == 0) {
        s->init_error = (int)strtol(value, NULL, 10);
    } else if (strcmp(key, "driver_branch") == 0) {
        s->driver_branch = (unsigned int)parse_u64(value);
    } else if (strcmp(key, "init_delay_ms") == 0) {
        s->init_delay_ms = (unsigned int)parse_u64(value);
    } else if (strcmp(key, "driver_version") == 0) {
        copy_str(s->driver_version, sizeof s->driver_version, value);
    } else if (strcmp(key, "device_count") == 0) {
        unsigned long long n = parse_u64(value);
        s->device_count = n > MAX_GPUS ? MAX_GPUS : (unsigned int)n;
    } else if (strncmp(key, "gpu.", 4) == 0) {
        const char *rest = key + 4;
        int i = take_index(&rest, MAX_GPUS);
        if (i >= 0)
            apply_gpu_key(&s->gpus[i], rest, value);
    }
}

/* Parses path into the live state; on a read failure the old state stays. */
static int load_locked(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    struct stat st;
    if (fstat(fileno(f), &st) != 0) {
        fclose(f);
        return -1;
    }
    memset(&scratch, 0, sizeof scratch);
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) >= 0)
        apply_line(&scratch, line);
    free(line);
    int failed = ferror(f);
    fclose(f);
    if (failed)
        return -1;
    memcpy(&state, &scratch, sizeof state);
    copy_str(loaded_path, sizeof loaded_path, path);
    loaded_stat = st;
    have_state = 1;
    return 0;
}

static int same_file_version(const struct stat *a, const struct stat *b)
{
    return a->st_ino == b->st_ino && a->st_dev == b->st_dev && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
           a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

/* Returns 0 when the state file exists (re-parsing it if it changed). */
static int refresh_locked(void)
{
    const char *path = getenv("FAKE_NVML_STATE");
    struct stat st;
    if (path == NULL || *path == '\0' || stat(path, &st) != 0)
        return -1;
    if (have_state && same_file_version(&st, &loaded_stat) && strcmp(path, loaded_path) == 0)
        return 0;
    load_locked(path);
    return 0;
}

/* ---- entry helpers ------------------------------------------------------- */

static inline void count_call(enum fake_function f)
{
    atomic_fetch_add_explicit(&call_counts[f], 1, memory_order_relaxed);
}

/* Counts the call and takes the lock; every path must end in leave(). */
static nvmlReturn_t enter(enum fake_function f)
{
    count_call(f);
    pthread_mutex_lock(&lock);
    if (init_refcount == 0)
        return NVML_ERROR_UNINITIALIZED;
    refresh_locked();
    if (state.driver_branch != 0 && function_since[f] > state.driver_branch)
        return NVML_ERROR_FUNCTION_NOT_FOUND;
    return NVML_SUCCESS;
}

static nvmlReturn_t leave(nvmlReturn_t rc)
{
    pthread_mutex_unlock(&lock);
    return rc;
}

static int function_disabled(const struct gpu_state *g, enum fake_function f)
{
    return (g->not_supported >> f) & 1;
}

/* enter() plus resolving a device handle against the current state. */
static nvmlReturn_t enter_device(enum fake_function f, nvmlDevice_t device,
                                 const struct gpu_state **gpu, const struct mig_state **mig)
{
    nvmlReturn_t rc = enter(f);
    if (rc != NVML_SUCCESS)
        return rc;
    if (device == NULL || !is_known_handle(device) || device->gpu >= state.device_count)
        return NVML_ERROR_INVALID_ARGUMENT;
    const struct gpu_state *g = &state.gpus[device->gpu];
    if (g->lost)
        return NVML_ERROR_GPU_IS_LOST;
    if (device->mig >= 0 && (!g->mig_mode || (unsigned int)device->mig >= g->mig_count))
        return NVML_ERROR_INVALID_ARGUMENT;
    if (function_disabled(g, f))
        return NVML_ERROR_NOT_SUPPORTED;
    if ((g->failing >> f) & 1)
        return NVML_ERROR_UNKNOWN;
    *gpu = g;
    *mig = device->mig >= 0 ? &g->migs[device->mig] : NULL;
    return NVML_SUCCESS;
}

static nvmlReturn_t copy_out_str(char *dst, unsigned int length, const char *src)
{
    if (dst == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    size_t n = strlen(src);
    if (n + 1 > length)
        return NVML_ERROR_INSUFFICIENT_SIZE;
    memcpy(dst, src, n + 1);
    return NVML_SUCCESS;
}

/* ---- init / system ------------------------------------------------------- */

static nvmlReturn_t do_init(enum fake_function f)
{
    count_call(f);
    pthread_mutex_lock(&lock);
    nvmlReturn_t rc = NVML_SUCCESS;
    if (refresh_locked() != 0 || !have_state)
        rc = NVML_ERROR_DRIVER_NOT_LOADED;
    else if (state.init_error != 0)
        rc = state.init_error;
    else
        init_refcount++;
    unsigned int delay_ms = have_state ? state.init_delay_ms : 0;
    pthread_mutex_unlock(&lock);
    /* A driver that hangs in init: the caller waits, other threads are not blocked. */
    if (delay_ms > 0) {
        struct timespec pause = {delay_ms / 1000, (long)(delay_ms % 1000) * 1000000L};
        nanosleep(&pause, NULL);
    }
    return rc;
}

EXPORT nvmlReturn_t nvmlInit_v2(void) { return do_init(FN_nvmlInit_v2); }

EXPORT nvmlReturn_t nvmlInitWithFlags(unsigned int flags)
{
    (void)flags;
    return do_init(FN_nvmlInitWithFlags);
}

EXPORT nvmlReturn_t nvmlShutdown(void)
{
    count_call(FN_nvmlShutdown);
    pthread_mutex_lock(&lock);
    if (init_refcount == 0)
        return leave(NVML_ERROR_UNINITIALIZED);
    init_refcount--;
    return leave(NVML_SUCCESS);
}

EXPORT const char *nvmlErrorString(nvmlReturn_t result)
{
    count_call(FN_nvmlErrorString);
    switch (result) {
    case NVML_SUCCESS: return "Success";
    case NVML_ERROR_UNINITIALIZED: return "Uninitialized";
    case NVML_ERROR_INVALID_ARGUMENT: return "Invalid Argument";
    case NVML_ERROR_NOT_SUPPORTED: return "Not Supported";
    case NVML_ERROR_NO_PERMISSION: return "Insufficient Permissions";
    case NVML_ERROR_NOT_FOUND: return "Not Found";
    case NVML_ERROR_INSUFFICIENT_SIZE: return "Insufficient Size";
    case NVML_ERROR_DRIVER_NOT_LOADED: return "Driver Not Loaded";
    case NVML_ERROR_FUNCTION_NOT_FOUND: return "Function Not Found";
    case NVML_ERROR_GPU_IS_LOST: return "GPU is lost";
    case NVML_ERROR_ARGUMENT_VERSION_MISMATCH: return "Argument version mismatch";
    default: return "Unknown Error";
    }
}

EXPORT nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int length)
{
    nvmlReturn_t rc = enter(FN_nvmlSystemGetDriverVersion);
    if (rc == NVML_SUCCESS)
        rc = copy_out_str(version, length, state.driver_version);
    return leave(rc);
}

EXPORT nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *deviceCount)
{
    nvmlReturn_t rc = enter(FN_nvmlDeviceGetCount_v2);
    if (rc == NVML_SUCCESS) {
        if (deviceCount == NULL)
            rc = NVML_ERROR_INVALID_ARGUMENT;
        else
            *deviceCount = state.device_count;
    }
    return leave(rc);
}

/* ---- handle lookups ------------------------------------------------------ */

EXPORT nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device)
{
    nvmlReturn_t rc = enter(FN_nvmlDeviceGetHandleByIndex_v2);
    if (rc != NVML_SUCCESS)
        return leave(rc);
    if (device == NULL || index >= state.device_count)
        return leave(NVML_ERROR_INVALID_ARGUMENT);
    const struct gpu_state *g = &state.gpus[index];
    if (g->lost)
        return leave(NVML_ERROR_GPU_IS_LOST);
    if (function_disabled(g, FN_nvmlDeviceGetHandleByIndex_v2))
        return leave(NVML_ERROR_NOT_SUPPORTED);
    *device = &gpu_handles[index];
    return leave(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlDeviceGetHandleByUUID(const char *uuid, nvmlDevice_t *device)
{
    nvmlReturn_t rc = enter(FN_nvmlDeviceGetHandleByUUID);
    if (rc != NVML_SUCCESS)
        return leave(rc);
    if (uuid == NULL || device == NULL)
        return leave(NVML_ERROR_INVALID_ARGUMENT);
    for (unsigned int i = 0; i < state.device_count; i++) {
        const struct gpu_state *g = &state.gpus[i];
        nvmlDevice_t found = NULL;
        if (strcmp(g->uuid, uuid) == 0)
            found = &gpu_handles[i];
        for (unsigned int j = 0; found == NULL && g->mig_mode && j < g->mig_count; j++)
            if (strcmp(g->migs[j].uuid, uuid) == 0)
                found = &mig_handles[i][j];
        if (found == NULL)
            continue;
        if (g->lost)
            return leave(NVML_ERROR_GPU_IS_LOST);
        if (function_disabled(g, FN_nvmlDeviceGetHandleByUUID))
            return leave(NVML_ERROR_NOT_SUPPORTED);
        *device = found;
        return leave(NVML_SUCCESS);
    }
    return leave(NVML_ERROR_NOT_FOUND);
}

/* ---- device queries ------------------------------------------------------ */

#define DEVICE_CALL(fn, device)                                                                    \
    const struct gpu_state *g = NULL;                                                              \
    const struct mig_state *m = NULL;                                                              \
    nvmlReturn_t rc = enter_device(FN_##fn, device, &g, &m);                                       \
    if (rc != NVML_SUCCESS)                                                                        \
        return leave(rc);

EXPORT nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t device, char *name, unsigned int length)
{
    DEVICE_CALL(nvmlDeviceGetName, device)
    if (m)
        return leave(NVML_ERROR_NOT_SUPPORTED);
    return leave(copy_out_str(name, length, g->name));
}

EXPORT nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t device, char *uuid, unsigned int length)
{
    DEVICE_CALL(nvmlDeviceGetUUID, device)
    return leave(copy_out_str(uuid, length, m ? m->uuid : g->uuid));
}

EXPORT nvmlReturn_t nvmlDeviceGetIndex(nvmlDevice_t device, unsigned int *index)
{
    DEVICE_CALL(nvmlDeviceGetIndex, device)
    if (m)
        return leave(NVML_ERROR_NOT_SUPPORTED);
    if (index == NULL)
        return leave(NVML_ERROR_INVALID_ARGUMENT);
    *index = device->gpu;
    return leave(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t device, nvmlUtilization_t *util)
{
    DEVICE_CALL(nvmlDeviceGetUtilizationRates, device)
    if (m || g->mig_mode)
        return leave(NVML_ERROR_NOT_SUPPORTED);
    if (util == NULL)
        return leave(NVML_ERROR_INVALID_ARGUMENT);
    util->gpu = g->util_gpu;
    util->memory = g->util_memory;
    return leave(NVML_SUCCESS);
}

static void memory_of(const struct gpu_state *g, const struct mig_state *m,
                      unsigned long long *total, unsigned long long *reserved,
                      unsigned long long *used, unsigned long long *free_)
{
    *total = m ? m->memory_total : g->memory_total;
    *used = m ? m->memory_used : g->memory_used;
    *reserved = m ? 0 : g->memory_reserved;
    unsigned long long taken = *used + *reserved;
    *free_ = taken >= *total ? 0 : *total - taken;
}

EXPORT nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t device, nvmlMemory_t *memory)
{
    DEVICE_CALL(nvmlDeviceGetMemoryInfo, device)
    if (memory == NULL)
        return leave(NVML_ERROR_INVALID_ARGUMENT);
    unsigned long long total, reserved, used, free_;
    memory_of(g, m, &total, &reserved, &used, &free_);
    memory->total = total;
    memory->used = used + reserved;
    memory->free = free_;
    return leave(NVML_SUCCESS);
}

#if FAKE_NVML_BRANCH >= SINCE_MEMORY_V2
EXPORT nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t device, nvmlMemory_v2_t *memory)
{
    DEVICE_CALL(nvmlDeviceGetMemoryInfo_v2, device)
    if (memory == NULL)
        return leave(NVML_ERROR_INVALID_ARGUMENT);
    if (memory->version != NVML_MEMORY_V2_VERSION)
        return leave(NVML_ERROR_ARGUMENT_VERSION_MISMATCH);
    memory_of(g, m, &memory->total, &memory->reserved, &memory->used, &memory->free);
    return leave(NVML_SUCCESS);
}

#endif

EXPORT nvmlReturn_t nvmlDeviceGetPowerUsage(nvmlDevice_t device, unsigned int *power)
{
    DEVICE_CALL(nvmlDeviceGetPowerUsage, device)
    if (m)
        return leave(NVML_ERROR_NOT_SUPPORTED);
    if (power == NULL)
        return leave(NVML_ERROR_INVALID_ARGUMENT);
    *power = g->power_mw;
    return leave(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlDeviceGetTotalEnergyConsumption(nvmlDevice_t device,
                                                        unsigned long long *energy)
{
    DEVICE_CALL(nvmlDeviceGetTotalEnergyConsumption, device)
    if (m)
        return leave(NVML_ERROR_NOT_SUPPORTED);
    if (energy == NULL)
        return leave(NVML_ERROR_INVALID_ARGUMENT);
    *energy = g->energy_mj;
    return leave(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlDeviceGetTemperature(nvmlDevice_t device, unsigned int sensorType,
                                             unsigned int *temp)
{
    DEVICE_CALL(nvmlDeviceGetTemperature, device)
    if (m)
        return leave(NVML_ERROR_NOT_SUPPORTED);
    if (temp == NULL || sensorType != NVML_TEMPERATURE_GPU)
        return leave(NVML_ERROR_INVALID_ARGUMENT);
    *temp = g->temperature < 0 ? 0u : (unsigned int)g->temperature;
    return leave(NVML_SUCCESS);
}

#if FAKE_NVML_BRANCH >= SINCE_TEMPERATURE_V
EXPORT nvmlReturn_t nvmlDeviceGetTemperatureV(nvmlDevice_t device, nvmlTemperature_v1_t *temp)
{
    DEVICE_CALL(nvmlDeviceGetTemperatureV, device)
    if (m)
        return leave(NVML_ERROR_NOT_SUPPORTED);
    if (temp == NULL)
        return leave(NVML_ERROR_INVALID_ARGUMENT);
    if (temp->version != NVML_TEMPERATURE_V1_VERSION)
        return leave(NVML_ERROR_ARGUMENT_VERSION_MISMATCH);
    if (temp->sensorType != NVML_TEMPERATURE_GPU)
        return leave(NVML_ERROR_INVALID_ARGUMENT);
    temp->temperature = g->temperature;
    return leave(NVML_SUCCESS);
}

#endif

EXPORT nvmlReturn_t nvmlDeviceGetClockInfo(nvmlDevice_t device, unsigned int type,
                                           unsigned int *clock)
{
    DEVICE_CALL(nvmlDeviceGetClockInfo, device)
    if (m)
        return leave(NVML_ERROR_NOT_SUPPORTED);
    if (clock == NULL || type >= NVML_CLOCK_COUNT)
        return leave(NVML_ERROR_INVALID_ARGUMENT);
    if (type != NVML_CLOCK_SM && type != NVML_CLOCK_GRAPHICS)
        return leave(NVML_ERROR_NOT_SUPPORTED);
    *clock = g->sm_clock_mhz;
    return leave(NVML_SUCCESS);
}

#if FAKE_NVML_BRANCH >= SINCE_CLOCKS_EVENT_REASONS
EXPORT nvmlReturn_t nvmlDeviceGetCurrentClocksEventReasons(nvmlDevice_t device,
                                                           unsigned long long *reasons)
{
    DEVICE_CALL(nvmlDeviceGetCurrentClocksEventReasons, device)
    if (m)
        return leave(NVML_ERROR_NOT_SUPPORTED);
    if (reasons == NULL)
        return leave(NVML_ERROR_INVALID_ARGUMENT);
    *reasons = g->clock_event_reasons;
    return leave(NVML_SUCCESS);
}

#endif

EXPORT nvmlReturn_t nvmlDeviceGetCurrentClocksThrottleReasons(nvmlDevice_t device,
                                                              unsigned long long *reasons)
{
    DEVICE_CALL(nvmlDeviceGetCurrentClocksThrottleReasons, device)
    if (m)
        return leave(NVML_ERROR_NOT_SUPPORTED);
    if (reasons == NULL)
        return leave(NVML_ERROR_INVALID_ARGUMENT);
    *reasons = g->clock_event_reasons;
    return leave(NVML_SUCCESS);
}

/* ---- MIG ----------------------------------------------------------------- */

EXPORT nvmlReturn_t nvmlDeviceGetMigMode(nvmlDevice_t device, unsigned int *currentMode,
                                         unsigned int *pendingMode)
{
    DEVICE_CALL(nvmlDeviceGetMigMode, device)
    if (m)
        return leave(NVML_ERROR_NOT_SUPPORTED);
    if (currentMode == NULL || pendingMode == NULL)
        return leave(NVML_ERROR_INVALID_ARGUMENT);
    *currentMode = (unsigned int)g->mig_mode;
    *pendingMode = (unsigned int)g->mig_mode;
    return leave(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlDeviceGetMaxMigDeviceCount(nvmlDevice_t device, unsigned int *count)
{
    DEVICE_CALL(nvmlDeviceGetMaxMigDeviceCount, device)
    if (m)
        return leave(NVML_ERROR_NOT_SUPPORTED);
    if (count == NULL)
        return leave(NVML_ERROR_INVALID_ARGUMENT);
    *count = g->mig_mode ? MAX_MIGS : 0;
    return leave(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlDeviceGetMigDeviceHandleByIndex(nvmlDevice_t device, unsigned int index,
                                                        nvmlDevice_t *migDevice)
{
    DEVICE_CALL(nvmlDeviceGetMigDeviceHandleByIndex, device)
    if (m)
        return leave(NVML_ERROR_NOT_SUPPORTED);
    if (migDevice == NULL)
        return leave(NVML_ERROR_INVALID_ARGUMENT);
    if (!g->mig_mode)
        return leave(NVML_ERROR_NOT_FOUND);
    if (index >= MAX_MIGS)
        return leave(NVML_ERROR_INVALID_ARGUMENT);
    if (index >= g->mig_count)
        return leave(NVML_ERROR_NOT_FOUND);
    *migDevice = &mig_handles[device->gpu][index];
    return leave(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlDeviceIsMigDeviceHandle(nvmlDevice_t device, unsigned int *isMigDevice)
{
    DEVICE_CALL(nvmlDeviceIsMigDeviceHandle, device)
    if (isMigDevice == NULL)
        return leave(NVML_ERROR_INVALID_ARGUMENT);
    *isMigDevice = m != NULL;
    return leave(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlDeviceGetGpuInstanceId(nvmlDevice_t device, unsigned int *id)
{
    DEVICE_CALL(nvmlDeviceGetGpuInstanceId, device)
    if (m == NULL || id == NULL)
        return leave(NVML_ERROR_INVALID_ARGUMENT);
    *id = m->gpu_instance_id;
    return leave(NVML_SUCCESS);
}

/* ---- GPM ----------------------------------------------------------------- */

#if FAKE_NVML_BRANCH >= SINCE_GPM

EXPORT nvmlReturn_t nvmlGpmQueryDeviceSupport(nvmlDevice_t device, nvmlGpmSupport_t *gpmSupport)
{
    DEVICE_CALL(nvmlGpmQueryDeviceSupport, device)
    if (m)
        return leave(NVML_ERROR_NOT_SUPPORTED);
    if (gpmSupport == NULL)
        return leave(NVML_ERROR_INVALID_ARGUMENT);
    if (gpmSupport->version != NVML_GPM_SUPPORT_VERSION)
        return leave(NVML_ERROR_ARGUMENT_VERSION_MISMATCH);
    gpmSupport->isSupportedDevice = (unsigned int)g->gpm_supported;
    return leave(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlGpmSampleAlloc(nvmlGpmSample_t *gpmSample)
{
    nvmlReturn_t rc = enter(FN_nvmlGpmSampleAlloc);
    if (rc != NVML_SUCCESS)
        return leave(rc);
    if (gpmSample == NULL)
        return leave(NVML_ERROR_INVALID_ARGUMENT);
    struct fake_gpm_sample *s = calloc(1, sizeof *s);
    if (s == NULL)
        return leave(NVML_ERROR_UNKNOWN);
    s->magic = GPM_SAMPLE_MAGIC;
    *gpmSample = s;
    return leave(NVML_SUCCESS);
}

static int valid_sample(const struct fake_gpm_sample *s)
{
    return s != NULL && s->magic == GPM_SAMPLE_MAGIC;
}

EXPORT nvmlReturn_t nvmlGpmSampleFree(nvmlGpmSample_t gpmSample)
{
    nvmlReturn_t rc = enter(FN_nvmlGpmSampleFree);
    if (rc != NVML_SUCCESS)
        return leave(rc);
    if (!valid_sample(gpmSample))
        return leave(NVML_ERROR_INVALID_ARGUMENT);
    gpmSample->magic = 0;
    free(gpmSample);
    return leave(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlGpmSampleGet(nvmlDevice_t device, nvmlGpmSample_t gpmSample)
{
    DEVICE_CALL(nvmlGpmSampleGet, device)
    if (m || !g->gpm_supported || g->mig_mode)
        return leave(NVML_ERROR_NOT_SUPPORTED);
    if (!valid_sample(gpmSample))
        return leave(NVML_ERROR_INVALID_ARGUMENT);
    gpmSample->filled = 1;
    gpmSample->gpu = device->gpu;
    clock_gettime(CLOCK_MONOTONIC, &gpmSample->taken);
    gpmSample->util_gpu = g->util_gpu;
    gpmSample->sm_activity = g->sm_activity;
    gpmSample->sm_occupancy = g->sm_occupancy;
    gpmSample->tensor_activity = g->tensor_activity;
    return leave(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlGpmMigSampleGet(nvmlDevice_t device, unsigned int gpuInstanceId,
                                        nvmlGpmSample_t gpmSample)
{
    (void)gpuInstanceId;
    (void)gpmSample;
    DEVICE_CALL(nvmlGpmMigSampleGet, device)
    (void)g;
    (void)m;
    return leave(NVML_ERROR_NOT_SUPPORTED);
}

EXPORT nvmlReturn_t nvmlGpmMetricsGet(nvmlGpmMetricsGet_t *metricsGet)
{
    nvmlReturn_t rc = enter(FN_nvmlGpmMetricsGet);
    if (rc != NVML_SUCCESS)
        return leave(rc);
    if (metricsGet == NULL)
        return leave(NVML_ERROR_INVALID_ARGUMENT);
    if (metricsGet->version != NVML_GPM_METRICS_GET_VERSION)
        return leave(NVML_ERROR_ARGUMENT_VERSION_MISMATCH);
    const struct fake_gpm_sample *s1 = metricsGet->sample1, *s2 = metricsGet->sample2;
    if (!valid_sample(s1) || !valid_sample(s2) || !s1->filled || !s2->filled ||
        s1->gpu != s2->gpu || metricsGet->numMetrics > GPM_METRICS_CAP)
        return leave(NVML_ERROR_INVALID_ARGUMENT);

    for (unsigned int i = 0; i < metricsGet->numMetrics; i++) {
        nvmlGpmMetric_t *out = &metricsGet->metrics[i];
        out->nvmlReturn = NVML_SUCCESS;
        out->metricInfo.unit = "%";
        switch (out->metricId) {
        case NVML_GPM_METRIC_GRAPHICS_UTIL:
            out->value = s2->util_gpu;
            out->metricInfo.shortName = "gr_util";
            out->metricInfo.longName = "graphics_utilization";
            break;
        case NVML_GPM_METRIC_SM_UTIL:
            out->value = s2->sm_activity;
            out->metricInfo.shortName = "sm_util";
            out->metricInfo.longName = "sm_utilization";
            break;
        case NVML_GPM_METRIC_SM_OCCUPANCY:
            out->value = s2->sm_occupancy;
            out->metricInfo.shortName = "sm_occ";
            out->metricInfo.longName = "sm_occupancy";
            break;
        case NVML_GPM_METRIC_ANY_TENSOR_UTIL:
            out->value = s2->tensor_activity;
            out->metricInfo.shortName = "tensor_util";
            out->metricInfo.longName = "any_tensor_utilization";
            break;
        default:
            out->nvmlReturn = NVML_ERROR_NOT_SUPPORTED;
            out->value = 0.0;
            out->metricInfo.shortName = NULL;
            out->metricInfo.longName = NULL;
            out->metricInfo.unit = NULL;
            break;
        }
    }
    return leave(NVML_SUCCESS);
}

#endif
