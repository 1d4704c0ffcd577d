/* api_libc — memory that glibc functions allocate on the program's behalf
 * comes from hakmem too: their results are hakmem blocks, and after each
 * subtest glibc's own heap is still empty (checked by run_subtests), which
 * also covers the allocations we cannot see (qsort's buffer, regcomp's
 * automaton, locale and NSS data). */
#include "check.h"

#include <dirent.h>
#include <execinfo.h>
#include <glob.h>
#include <iconv.h>
#include <locale.h>
#include <pwd.h>
#include <regex.h>
#include <time.h>

static void t_strdup(void)
{
    char *a = strdup("hello, hakmem");
    REQUIRE(a, "strdup failed");
    CHECK_OWNS(a);
    CHECK(strcmp(a, "hello, hakmem") == 0, "strdup copied '%s'", a);
    char *b = strndup("hello, hakmem", 5);
    REQUIRE(b, "strndup failed");
    CHECK_OWNS(b);
    CHECK(strcmp(b, "hello") == 0, "strndup copied '%s'", b);
    char big[10000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    char *c = strdup(big);
    REQUIRE(c, "strdup of 10 KB failed");
    CHECK_OWNS(c);
    free(a);
    free(b);
    free(c);
}

static void t_asprintf(void)
{
    char *s = NULL;
    int n = asprintf(&s, "%s-%d-%0500d", "x", 42, 7);
    REQUIRE(n > 0 && s, "asprintf failed");
    CHECK_OWNS(s);
    CHECK((size_t)n == strlen(s), "asprintf returned %d for a %zu-char string", n, strlen(s));
    free(s);
    /* Large output: vasprintf grows its buffer with realloc. */
    n = asprintf(&s, "%0200000d", 1);
    REQUIRE(n == 200000 && s, "asprintf of 200000 chars returned %d", n);
    CHECK_OWNS(s);
    free(s);
}

static void t_getline(void)
{
    FILE *fp = tmpfile();
    REQUIRE(fp, "tmpfile failed: %s", strerror(errno));
    CHECK_OWNS(fp);
    for (int i = 0; i < 50; i++)
        fprintf(fp, "line %d %0*d\n", i, i * 300, 0);
    fputs("a;b;c", fp);
    rewind(fp);
    char *line = NULL;
    size_t cap = 0;
    int lines = 0;
    while (lines < 50 && getline(&line, &cap, fp) > 0) {
        REQUIRE(line, "getline gave no buffer");
        CHECK_OWNS(line); /* grown by realloc as the lines get longer */
        lines++;
    }
    CHECK(lines == 50, "read %d lines", lines);
    free(line);
    line = NULL;
    cap = 0;
    CHECK(getdelim(&line, &cap, ';', fp) == 2, "getdelim did not read 'a;'");
    REQUIRE(line, "getdelim gave no buffer");
    CHECK_OWNS(line);
    free(line);
    fclose(fp);
}

/* fopen's FILE and the stream buffer it allocates on first use. */
static void t_stdio_buffers(void)
{
    FILE *fp = fopen("/proc/self/maps", "r");
    REQUIRE(fp, "fopen failed");
    CHECK_OWNS(fp);
    char buf[256];
    REQUIRE(fgets(buf, sizeof buf, fp), "fgets failed");
    REQUIRE(fp->_IO_buf_base, "no stream buffer after a read");
    CHECK_OWNS(fp->_IO_buf_base);
    fclose(fp);

    fp = fopen("/dev/null", "w");
    REQUIRE(fp, "fopen /dev/null failed");
    fputs("x", fp);
    REQUIRE(fp->_IO_buf_base, "no stream buffer after a write");
    CHECK_OWNS(fp);
    CHECK_OWNS(fp->_IO_buf_base);
    fclose(fp);

    int fd = open("/dev/null", O_RDONLY);
    REQUIRE(fd >= 0, "open failed");
    fp = fdopen(fd, "r");
    REQUIRE(fp, "fdopen failed");
    CHECK_OWNS(fp);
    fclose(fp);

    fp = popen("echo popen-ok", "r");
    REQUIRE(fp, "popen failed");
    CHECK_OWNS(fp);
    CHECK(fgets(buf, sizeof buf, fp) && strcmp(buf, "popen-ok\n") == 0, "popen read '%s'", buf);
    CHECK(pclose(fp) == 0, "pclose failed");

    char *mem = NULL;
    size_t len = 0;
    fp = open_memstream(&mem, &len);
    REQUIRE(fp, "open_memstream failed");
    for (int i = 0; i < 10000; i++)
        fprintf(fp, "%d,", i);
    fclose(fp);
    REQUIRE(mem, "open_memstream produced no buffer");
    CHECK_OWNS(mem);
    CHECK(len > 40000, "open_memstream length %zu", len);
    free(mem);
}

static void t_dirs_and_paths(void)
{
    DIR *d = opendir("/");
    REQUIRE(d, "opendir / failed");
    CHECK_OWNS(d);
    int entries = 0;
    while (readdir(d))
        entries++;
    CHECK(entries > 2, "only %d entries in /", entries);
    closedir(d);

    struct dirent **names = NULL;
    int n = scandir("/proc/self", &names, NULL, alphasort);
    REQUIRE(n > 0 && names, "scandir failed");
    CHECK_OWNS(names);
    for (int i = 0; i < n; i++) {
        CHECK_OWNS(names[i]);
        free(names[i]);
    }
    free(names);

    char *rp = realpath("/proc/self/../self/.", NULL);
    REQUIRE(rp, "realpath failed");
    CHECK_OWNS(rp);
    free(rp);
    char *cwd = getcwd(NULL, 0);
    REQUIRE(cwd, "getcwd(NULL, 0) failed");
    CHECK_OWNS(cwd);
    free(cwd);
    cwd = get_current_dir_name();
    REQUIRE(cwd, "get_current_dir_name failed");
    CHECK_OWNS(cwd);
    free(cwd);

    glob_t g;
    memset(&g, 0, sizeof g);
    CHECK(glob("/proc/self/*", 0, NULL, &g) == 0, "glob failed");
    CHECK(g.gl_pathc > 5, "glob matched %zu", g.gl_pathc);
    if (g.gl_pathv) {
        CHECK_OWNS(g.gl_pathv);
        CHECK_OWNS(g.gl_pathv[0]);
    }
    globfree(&g);
}

static void t_scanf_ms(void)
{
    char *word = NULL;
    int r = sscanf("allocated-by-scanf rest", "%ms", &word);
    REQUIRE(r == 1 && word, "sscanf %%ms failed");
    CHECK_OWNS(word);
    CHECK(strcmp(word, "allocated-by-scanf") == 0, "sscanf read '%s'", word);
    free(word);
}

static void t_backtrace_symbols(void)
{
    void *frames[16];
    int n = backtrace(frames, 16);
    REQUIRE(n > 0, "backtrace found no frames");
    char **syms = backtrace_symbols(frames, n);
    REQUIRE(syms, "backtrace_symbols failed");
    CHECK_OWNS(syms);
    free(syms);
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* glibc's qsort takes a malloc'd buffer for large arrays. */
static void t_qsort(void)
{
    enum { N = 200000 };
    int *v = malloc(N * sizeof *v);
    REQUIRE(v, "malloc failed");
    CHECK_OWNS(v);
    uint64_t rng = 1;
    for (int i = 0; i < N; i++)
        v[i] = (int)(rng_next(&rng) % 1000000);
    qsort(v, N, sizeof *v, cmp_int);
    for (int i = 1; i < N; i++)
        if (v[i - 1] > v[i]) {
            CHECK(0, "not sorted at %d", i);
            break;
        }
    /* Elements larger than 32 bytes make glibc sort an array of pointers. */
    struct big {
        int key;
        char pad[60];
    } *w = malloc(20000 * sizeof *w);
    REQUIRE(w, "malloc failed");
    for (int i = 0; i < 20000; i++)
        w[i].key = (int)(rng_next(&rng) % 1000);
    qsort(w, 20000, sizeof *w, cmp_int);
    for (int i = 1; i < 20000; i++)
        if (w[i - 1].key > w[i].key) {
            CHECK(0, "struct array not sorted at %d", i);
            break;
        }
    free(w);
    free(v);
}

/* Internal allocations of regex, environment, locale, time zone, iconv and
 * NSS: results that are hakmem blocks are checked, the rest is covered by
 * the glibc-heap check after the subtest. */
static void t_libc_internals(void)
{
    regex_t re;
    CHECK(regcomp(&re, "^(a+|b*)c{2,5}[[:alpha:]]+$", REG_EXTENDED) == 0, "regcomp failed");
    CHECK(regexec(&re, "aaaccczz", 0, NULL, 0) == 0, "regexec did not match");
    regfree(&re);

    char name[32], value[64];
    for (int i = 0; i < 300; i++) { /* environ grows by realloc */
        snprintf(name, sizeof name, "HKTEST_VAR_%d", i);
        snprintf(value, sizeof value, "value-%d", i);
        CHECK(setenv(name, value, 1) == 0, "setenv failed");
    }
    CHECK(getenv("HKTEST_VAR_299") && strcmp(getenv("HKTEST_VAR_299"), "value-299") == 0, "getenv after setenv");
    for (int i = 0; i < 300; i++) {
        snprintf(name, sizeof name, "HKTEST_VAR_%d", i);
        unsetenv(name);
    }

    setlocale(LC_ALL, "C.UTF-8");
    locale_t loc = newlocale(LC_ALL_MASK, "C.UTF-8", (locale_t)0);
    if (loc)
        freelocale(loc);
    setlocale(LC_ALL, "C");

    setenv("TZ", "Europe/Paris", 1);
    tzset();
    time_t t = 1700000000;
    struct tm tm;
    CHECK(localtime_r(&t, &tm) != NULL, "localtime_r failed");

    iconv_t cd = iconv_open("UTF-8", "ISO-8859-1");
    CHECK(cd != (iconv_t)-1, "iconv_open failed: %s", strerror(errno));
    if (cd != (iconv_t)-1) {
        CHECK_OWNS(cd);
        iconv_close(cd);
    }

    struct passwd *pw = getpwuid(0);
    CHECK(pw != NULL, "getpwuid(0) found nothing");
}

int main(int argc, char **argv)
{
    static const struct subtest tests[] = {
        {"strdup", t_strdup},
        {"asprintf", t_asprintf},
        {"getline", t_getline},
        {"stdio_buffers", t_stdio_buffers},
        {"dirs_and_paths", t_dirs_and_paths},
        {"scanf_ms", t_scanf_ms},
        {"backtrace_symbols", t_backtrace_symbols},
        {"qsort", t_qsort},
        {"libc_internals", t_libc_internals},
    };
    return run_subtests(argc, argv, tests, sizeof tests / sizeof tests[0]);
}
