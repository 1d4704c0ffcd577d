/* HAKMEM_* parsing and validation, driven by config_table.h.
 *
 * Runs inside the first malloc, so it must not allocate: the environment
 * is walked directly, numbers are parsed with strtoll/strtod on bounded
 * strings, and messages go through log.c. A bad value costs one stderr
 * line and the default; nothing here can fail the process. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "config.h"
#include "hakmem_internal.h"
#include "probes.h"

extern char **environ;

struct cfg_entry {
    const char *name;
    enum hak_cfg_type type;
    const char *def;
    double min, max;
    const char *words;
    const char *effect;
    const char *doc;
};

static const struct cfg_entry cfg_table[HAK_CFG_COUNT] = {
#define HAK_CFG_ROW(id, type, def, lo, hi, words, effect, doc) \
    [HAK_CFG_##id] = {"HAKMEM_" #id, type, def, (double)(lo), (double)(hi), words, effect, doc},
    HAK_CONFIG_TABLE(HAK_CFG_ROW)
#undef HAK_CFG_ROW
};

#define HAK_CFG_STRING_MAX 256

/* The list and string storage lives apart, for the few variables of those
 * types: in every value it made the table 49 KiB, all of it resident in
 * every process (the defaults are parsed into every entry). */
struct cfg_text {
    long long list[HAK_CFG_LIST_MAX];
    char str[HAK_CFG_STRING_MAX];
};

struct cfg_value {
    bool has_value;
    enum hak_cfg_source source;
    long long i;
    double d;
    int list_len;
    struct cfg_text *text; /* LIST and STRING entries only */
};

static struct cfg_value cfg_values[HAK_CFG_COUNT];
#define CFG_TEXT_SLOTS 16
static struct cfg_text cfg_texts[CFG_TEXT_SLOTS];
static struct cfg_text cfg_no_text; /* what other entries read: empty */
static unsigned cfg_rejected;

/* Build-time switches of the seed: set in the environment they do nothing,
 * and the user should hear which make switch they meant. */
static const struct {
    const char *name;
    const char *make_switch;
} build_flags[] = {
    {"HAKMEM_ENABLE_STATS", "STATS=1"},
    {"HAKMEM_BUILD_RELEASE", "DEBUG=0 (the default)"},
    {"HAKMEM_BUILD_DEBUG", "DEBUG=1"},
    {"HAKMEM_DEBUG_COUNTERS", "COUNTERS=1"},
    {"HAKMEM_USDT", "USDT=1 (the default) or USDT=0"},
    {"HAKMEM_TINY_MINIMAL_FRONT", "EXTRA_CFLAGS=-DHAKMEM_TINY_MINIMAL_FRONT=1"},
    {"HAKMEM_TINY_BENCH_FASTPATH", "EXTRA_CFLAGS=-DHAKMEM_TINY_BENCH_FASTPATH=1"},
    {"HAKMEM_TINY_BENCH_SLL_ONLY", "EXTRA_CFLAGS=-DHAKMEM_TINY_BENCH_SLL_ONLY=1"},
    {"HAKMEM_TINY_STAT_SAMPLING", "STATS=1 (with HAKMEM_TINY_STAT_RATE_LG)"},
};

/* Variables read by hakmem's own tools (not by the library). */
static const char *const tool_variables[] = {
    "HAKMEM_TRACE_WAIT", "HAKMEM_BUILD", /* the test suite's build folder */
};

static void reject(enum hak_cfg_id id, const char *value, enum hak_cfg_reject reason, const char *expected)
{
    const struct cfg_entry *e = &cfg_table[id];
    cfg_rejected++;
    HAK_COUNT(config_rejected, 1);
    HAK_PROBE(config_rejected, e->name, value, (int)reason);
    const char *def = e->def[0] ? e->def : "unset";
    hak_warn("%s=\"%.64s\" rejected: expected %s; using default %s", e->name, value, expected, def);
}

static bool parse_bool(const char *s, long long *out)
{
    static const char *const yes[] = {"1", "true", "yes", "on"};
    static const char *const no[] = {"0", "false", "no", "off"};
    for (size_t k = 0; k < sizeof(yes) / sizeof(yes[0]); k++) {
        if (strcasecmp(s, yes[k]) == 0) {
            *out = 1;
            return true;
        }
        if (strcasecmp(s, no[k]) == 0) {
            *out = 0;
            return true;
        }
    }
    return false;
}

static bool parse_integer(const char *s, long long *out)
{
    if (*s == '\0' || strlen(s) > 32)
        return false;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0')
        return false;
    *out = v;
    return true;
}

/* Bytes, with an optional K/M/G (or KB/KiB, ...) suffix, powers of 1024. */
static bool parse_size(const char *s, long long *out)
{
    if (*s == '\0' || strlen(s) > 32)
        return false;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || v < 0)
        return false;
    int shift = 0;
    switch (*end) {
    case '\0': break;
    case 'k':
    case 'K':
        shift = 10;
        end++;
        break;
    case 'm':
    case 'M':
        shift = 20;
        end++;
        break;
    case 'g':
    case 'G':
        shift = 30;
        end++;
        break;
    default: return false;
    }
    if (shift && (strcasecmp(end, "") == 0 || strcasecmp(end, "b") == 0 || strcasecmp(end, "ib") == 0))
        end += strlen(end);
    if (*end != '\0')
        return false;
    if (shift && v > (LLONG_MAX >> shift))
        return false;
    *out = v << shift;
    return true;
}

static bool parse_double(const char *s, double *out)
{
    if (*s == '\0' || strlen(s) > 32)
        return false;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !isfinite(v))
        return false;
    *out = v;
    return true;
}

/* Index of s among "a|b|c", or -1. */
static int enum_index(const char *words, const char *s)
{
    int index = 0;
    size_t len = strlen(s);
    for (const char *w = words; *w;) {
        const char *bar = strchr(w, '|');
        size_t wlen = bar ? (size_t)(bar - w) : strlen(w);
        if (wlen == len && strncasecmp(w, s, len) == 0)
            return index;
        index++;
        if (!bar)
            break;
        w = bar + 1;
    }
    return -1;
}

static const char *type_expectation(const struct cfg_entry *e, char *buf, size_t len)
{
    switch (e->type) {
    case HAK_T_BOOL: return "0 or 1 (also true/false, yes/no, on/off)";
    case HAK_T_INT: snprintf(buf, len, "an integer in [%.0f, %.0f]", e->min, e->max); return buf;
    case HAK_T_SIZE:
        snprintf(buf, len, "a size in bytes in [%.0f, %.0f], K/M/G suffixes allowed", e->min, e->max);
        return buf;
    case HAK_T_DOUBLE: snprintf(buf, len, "a number in [%g, %g]", e->min, e->max); return buf;
    case HAK_T_ENUM: snprintf(buf, len, "one of %s", e->words); return buf;
    case HAK_T_LIST:
        snprintf(buf, len, "comma-separated integers in [%.0f, %.0f], at most %d", e->min, e->max, HAK_CFG_LIST_MAX);
        return buf;
    default: return "a value";
    }
}

/* Parse `text` for entry id into v. On failure reports (when report is
 * set) and returns false, leaving v untouched. */
static bool parse_value(enum hak_cfg_id id, const char *text, struct cfg_value *v, bool report)
{
    const struct cfg_entry *e = &cfg_table[id];
    char expected[128];
    long long n;
    double d;
    struct cfg_value parsed = *v;
    long long list[HAK_CFG_LIST_MAX];
    enum hak_cfg_reject why = HAK_REJECT_SYNTAX;

    switch (e->type) {
    case HAK_T_BOOL:
        if (!parse_bool(text, &n))
            goto bad;
        parsed.i = n;
        break;
    case HAK_T_INT:
    case HAK_T_SIZE:
        if (!(e->type == HAK_T_INT ? parse_integer(text, &n) : parse_size(text, &n)))
            goto bad;
        if ((double)n < e->min || (double)n > e->max) {
            why = HAK_REJECT_RANGE;
            goto bad;
        }
        parsed.i = n;
        break;
    case HAK_T_DOUBLE:
        if (!parse_double(text, &d))
            goto bad;
        if (d < e->min || d > e->max) {
            why = HAK_REJECT_RANGE;
            goto bad;
        }
        parsed.d = d;
        break;
    case HAK_T_ENUM:
        n = enum_index(e->words, text);
        if (n < 0) {
            why = HAK_REJECT_WORD;
            goto bad;
        }
        parsed.i = n;
        break;
    case HAK_T_LIST: {
        char item[40];
        parsed.list_len = 0;
        for (const char *p = text;;) {
            const char *comma = strchr(p, ',');
            size_t len = comma ? (size_t)(comma - p) : strlen(p);
            if (len == 0 || len >= sizeof(item) || parsed.list_len == HAK_CFG_LIST_MAX)
                goto bad;
            memcpy(item, p, len);
            item[len] = '\0';
            if (!parse_integer(item, &n))
                goto bad;
            if ((double)n < e->min || (double)n > e->max) {
                why = HAK_REJECT_RANGE;
                goto bad;
            }
            list[parsed.list_len++] = n;
            if (!comma)
                break;
            p = comma + 1;
        }
        break;
    }
    case HAK_T_STRING:
        if (strlen(text) >= HAK_CFG_STRING_MAX) {
            snprintf(expected, sizeof(expected), "at most %d characters", HAK_CFG_STRING_MAX - 1);
            if (report)
                reject(id, text, HAK_REJECT_SYNTAX, expected);
            return false;
        }
        break;
    case HAK_T_REMOVED: return false;
    }
    if (e->type == HAK_T_LIST)
        memcpy(v->text->list, list, (size_t)parsed.list_len * sizeof(list[0]));
    if (e->type == HAK_T_STRING)
        strcpy(v->text->str, text);
    parsed.has_value = true;
    *v = parsed;
    return true;
bad:
    if (report)
        reject(id, text, why, type_expectation(e, expected, sizeof(expected)));
    return false;
}

static size_t edit_distance(const char *a, const char *b)
{
    enum { MAXLEN = 64 };
    size_t la = strlen(a), lb = strlen(b);
    if (la >= MAXLEN || lb >= MAXLEN)
        return (size_t)-1;
    size_t row[MAXLEN + 1];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
            size_t best = diag + cost;
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

static void report_unknown(const char *name, size_t name_len, const char *value)
{
    char unknown[96];
    if (name_len >= sizeof(unknown))
        name_len = sizeof(unknown) - 1;
    memcpy(unknown, name, name_len);
    unknown[name_len] = '\0';

    for (size_t k = 0; k < sizeof(tool_variables) / sizeof(tool_variables[0]); k++)
        if (strcmp(unknown, tool_variables[k]) == 0)
            return;
    for (size_t k = 0; k < sizeof(build_flags) / sizeof(build_flags[0]); k++) {
        if (strcmp(unknown, build_flags[k].name) == 0) {
            cfg_rejected++;
            HAK_COUNT(config_rejected, 1);
            HAK_PROBE(config_rejected, build_flags[k].name, value, (int)HAK_REJECT_BUILD_FLAG);
            hak_warn("%s is a build-time switch, not an environment variable: rebuild with make %s", unknown,
                     build_flags[k].make_switch);
            return;
        }
    }
    const char *best = NULL;
    size_t best_distance = (size_t)-1;
    for (int id = 0; id < HAK_CFG_COUNT; id++) {
        if (cfg_table[id].type == HAK_T_REMOVED)
            continue;
        size_t d = edit_distance(unknown, cfg_table[id].name);
        if (d < best_distance) {
            best_distance = d;
            best = cfg_table[id].name;
        }
    }
    size_t tolerance = name_len / 4 > 3 ? name_len / 4 : 3;
    if (best && best_distance > tolerance)
        best = NULL;
    HAK_PROBE(config_unknown, unknown, best);
    if (best)
        hak_warn("unknown variable %s ignored (did you mean %s?)", unknown, best);
    else
        hak_warn("unknown variable %s ignored (see docs/CONFIG.md for the list)", unknown);
}

static int find_entry(const char *name, size_t len)
{
    for (int id = 0; id < HAK_CFG_COUNT; id++)
        if (strncmp(cfg_table[id].name, name, len) == 0 && cfg_table[id].name[len] == '\0')
            return id;
    return -1;
}

/* The preset a mode (or the memory diet) gives a variable the user did
 * not set. */
static void preset(enum hak_cfg_id id, const char *text)
{
    struct cfg_value *v = &cfg_values[id];
    if (v->source == HAK_SRC_ENV)
        return;
    if (parse_value(id, text, v, false))
        v->source = HAK_SRC_MODE;
}

static void apply_modes(void)
{
    switch ((enum hak_mode)cfg_values[HAK_CFG_MODE].i) {
    case HAK_MODE_MINIMAL:
        preset(HAK_CFG_BIGCACHE_MAX_MB, "0");
        preset(HAK_CFG_TINY_MAG_CAP, "16");
        preset(HAK_CFG_TINY_REFILL_MAX, "16");
        preset(HAK_CFG_TINY_REFILL_MAX_HOT, "32");
        break;
    case HAK_MODE_FAST:
        preset(HAK_CFG_TINY_MAG_CAP, "1024");
        preset(HAK_CFG_BIGCACHE_MAX_MB, "512");
        break;
    case HAK_MODE_BALANCED: break;
    case HAK_MODE_LEARNING: preset(HAK_CFG_LEARN, "1"); break;
    case HAK_MODE_RESEARCH:
        preset(HAK_CFG_LEARN, "1");
        preset(HAK_CFG_VERBOSE, "1");
        break;
    }
    if (cfg_values[HAK_CFG_TINY_MEM_DIET].i) {
        preset(HAK_CFG_TINY_MAG_CAP, "32");
        preset(HAK_CFG_TINY_REFILL_MAX, "16");
        preset(HAK_CFG_TINY_REFILL_MAX_HOT, "32");
        preset(HAK_CFG_BIGCACHE_MAX_MB, "8");
    }
}

static void check_consistency(void)
{
    struct cfg_value *down = &cfg_values[HAK_CFG_SS_TIER_DOWN_THRESHOLD];
    struct cfg_value *up = &cfg_values[HAK_CFG_SS_TIER_UP_THRESHOLD];
    if (down->d >= up->d) {
        cfg_rejected++;
        HAK_COUNT(config_rejected, 1);
        HAK_PROBE(config_rejected, cfg_table[HAK_CFG_SS_TIER_UP_THRESHOLD].name, "", (int)HAK_REJECT_INCONSISTENT);
        hak_warn("HAKMEM_SS_TIER_DOWN_THRESHOLD (%g) must be below HAKMEM_SS_TIER_UP_THRESHOLD (%g); "
                 "using defaults %s and %s",
                 down->d, up->d, cfg_table[HAK_CFG_SS_TIER_DOWN_THRESHOLD].def,
                 cfg_table[HAK_CFG_SS_TIER_UP_THRESHOLD].def);
        parse_value(HAK_CFG_SS_TIER_DOWN_THRESHOLD, cfg_table[HAK_CFG_SS_TIER_DOWN_THRESHOLD].def, down, false);
        parse_value(HAK_CFG_SS_TIER_UP_THRESHOLD, cfg_table[HAK_CFG_SS_TIER_UP_THRESHOLD].def, up, false);
        down->source = up->source = HAK_SRC_DEFAULT;
    }
}

static void open_log_file(void)
{
    const char *path = cfg_values[HAK_CFG_LOG_FILE].text->str;
    if (!path[0])
        return;
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
        hak_warn("HAKMEM_LOG_FILE=\"%.64s\" cannot be opened (errno %d); logging to stderr", path, errno);
        return;
    }
    hak_log_set_fd(fd);
}

void hak_config_load(void)
{
    int saved_errno = errno;
    int text_slots = 0;
    for (int id = 0; id < HAK_CFG_COUNT; id++) {
        bool has_text = cfg_table[id].type == HAK_T_LIST || cfg_table[id].type == HAK_T_STRING;
        if (has_text && text_slots == CFG_TEXT_SLOTS)
            hak_fatal("more than %d list and string variables: raise CFG_TEXT_SLOTS", CFG_TEXT_SLOTS);
        cfg_values[id].text = has_text ? &cfg_texts[text_slots++] : &cfg_no_text;
        cfg_values[id].source = HAK_SRC_DEFAULT;
        cfg_values[id].has_value = false;
        if (cfg_table[id].def[0] && !parse_value(id, cfg_table[id].def, &cfg_values[id], false))
            hak_fatal("config table default of %s does not parse", cfg_table[id].name);
    }

    /* QUIET first, so that it silences the warnings of every other
     * variable whatever their order in the environment. */
    char **env = environ;
    for (char **e = env; e && *e; e++) {
        if (strncmp(*e, "HAKMEM_QUIET=", 13) == 0) {
            long long quiet;
            if (parse_bool(*e + 13, &quiet))
                hak_log_quiet(quiet != 0);
        }
    }

    for (char **e = env; e && *e; e++) {
        if (strncmp(*e, "HAKMEM_", 7) != 0)
            continue;
        const char *eq = strchr(*e, '=');
        if (!eq)
            continue;
        size_t name_len = (size_t)(eq - *e);
        const char *value = eq + 1;
        int id = find_entry(*e, name_len);
        if (id < 0) {
            report_unknown(*e, name_len, value);
            continue;
        }
        if (cfg_table[id].type == HAK_T_REMOVED) {
            cfg_rejected++;
            HAK_COUNT(config_rejected, 1);
            HAK_PROBE(config_rejected, cfg_table[id].name, value, (int)HAK_REJECT_REMOVED);
            hak_warn("%s is removed and ignored (%s)", cfg_table[id].name, cfg_table[id].doc);
            continue;
        }
        if (parse_value((enum hak_cfg_id)id, value, &cfg_values[id], true))
            cfg_values[id].source = HAK_SRC_ENV;
    }
    apply_modes();
    check_consistency();
    hak_log_quiet(cfg_values[HAK_CFG_QUIET].i != 0);
    open_log_file();

    unsigned set_count = 0;
    for (int id = 0; id < HAK_CFG_COUNT; id++)
        set_count += cfg_values[id].source == HAK_SRC_ENV;
    HAK_PROBE(config_loaded, set_count, cfg_rejected, (int)cfg_values[HAK_CFG_MODE].i);
    errno = saved_errno;
}

bool hak_cfg_is_set(enum hak_cfg_id id)
{
    return cfg_values[id].has_value;
}

enum hak_cfg_source hak_cfg_source(enum hak_cfg_id id)
{
    return cfg_values[id].source;
}

long long hak_cfg_int(enum hak_cfg_id id)
{
    return cfg_values[id].i;
}

double hak_cfg_double(enum hak_cfg_id id)
{
    return cfg_values[id].d;
}

const char *hak_cfg_str(enum hak_cfg_id id)
{
    return cfg_values[id].text ? cfg_values[id].text->str : ""; /* "" before hak_config_load */
}

int hak_cfg_list(enum hak_cfg_id id, const long long **items)
{
    *items = cfg_values[id].text ? cfg_values[id].text->list : cfg_no_text.list;
    return cfg_values[id].list_len;
}

unsigned hak_config_rejected_count(void)
{
    return cfg_rejected;
}

/* ---- printing: "hakmem config" and docs/CONFIG.md ---- */

static const char *type_name(enum hak_cfg_type t)
{
    static const char *const names[] = {"bool", "int", "size", "number", "enum", "list", "string", "removed"};
    return names[t];
}

static void format_value(enum hak_cfg_id id, char *buf, size_t len)
{
    const struct cfg_entry *e = &cfg_table[id];
    const struct cfg_value *v = &cfg_values[id];
    if (!v->has_value) {
        snprintf(buf, len, "(unset)");
        return;
    }
    switch (e->type) {
    case HAK_T_BOOL:
    case HAK_T_INT:
    case HAK_T_SIZE: snprintf(buf, len, "%lld", v->i); break;
    case HAK_T_DOUBLE: snprintf(buf, len, "%g", v->d); break;
    case HAK_T_ENUM: {
        const char *w = e->words;
        for (long long k = 0; k < v->i && w; k++) {
            w = strchr(w, '|');
            if (w)
                w++;
        }
        size_t wlen = w ? (strchr(w, '|') ? (size_t)(strchr(w, '|') - w) : strlen(w)) : 0;
        snprintf(buf, len, "%.*s", (int)wlen, w ? w : "");
        break;
    }
    case HAK_T_LIST: {
        size_t used = 0;
        buf[0] = '\0';
        for (int k = 0; k < v->list_len && used < len; k++)
            used += (size_t)snprintf(buf + used, len - used, "%s%lld", k ? "," : "", v->text->list[k]);
        break;
    }
    case HAK_T_STRING: snprintf(buf, len, "%s", v->text->str); break;
    case HAK_T_REMOVED: snprintf(buf, len, "(removed)"); break;
    }
}

static void format_range(const struct cfg_entry *e, char *buf, size_t len)
{
    switch (e->type) {
    case HAK_T_BOOL: snprintf(buf, len, "0, 1"); break;
    case HAK_T_INT:
    case HAK_T_SIZE:
    case HAK_T_LIST: snprintf(buf, len, "%.0f .. %.0f", e->min, e->max); break;
    case HAK_T_DOUBLE: snprintf(buf, len, "%g .. %g", e->min, e->max); break;
    case HAK_T_ENUM: {
        size_t k = 0;
        for (const char *w = e->words; *w && k + 2 < len; w++)
            buf[k++] = *w == '|' ? ',' : *w;
        buf[k] = '\0';
        break;
    }
    default: snprintf(buf, len, "-"); break;
    }
}

HAK_EXPORT int hakmem_config_print(int fd, int markdown)
{
    hak_ensure_init();
    char value[256], range[96];
    if (markdown) {
        hak_fdprintf(fd, "# hakmem configuration reference\n\n"
                         "Generated by `build/hakmem-config --markdown` from `src/config_table.h`; "
                         "`tests/test_config.py` fails when this file and the table disagree.\n\n"
                         "A bad value gets one line on stderr naming the variable, the value and what is "
                         "accepted, and the default is used. An unknown `HAKMEM_*` name gets a \"did you "
                         "mean\" line. `HAKMEM_QUIET=1` silences both.\n\n"
                         "*Takes effect*: `now` = acts in this build; `no-op` = accepted, no effect (the description "
                         "says why); otherwise the tier or feature that "
                         "will act on it (the value is already parsed and validated).\n\n"
                         "| Variable | Type | Default | Range / values | Takes effect | Description |\n"
                         "|---|---|---|---|---|---|\n");
        for (int id = 0; id < HAK_CFG_COUNT; id++) {
            const struct cfg_entry *e = &cfg_table[id];
            format_range(e, range, sizeof(range));
            hak_fdprintf(fd, "| `%s` | %s | %s | %s | %s | %s |\n", e->name, type_name(e->type),
                         e->def[0] ? e->def : "unset", range, e->effect, e->doc);
        }
        return 0;
    }
    static const char *const sources[] = {"default", "mode", "env"};
    for (int id = 0; id < HAK_CFG_COUNT; id++) {
        const struct cfg_entry *e = &cfg_table[id];
        if (e->type == HAK_T_REMOVED)
            continue;
        format_value((enum hak_cfg_id)id, value, sizeof(value));
        hak_fdprintf(fd, "%s=%s  (%s; %s)\n", e->name, value, sources[cfg_values[id].source], e->effect);
    }
    return 0;
}
