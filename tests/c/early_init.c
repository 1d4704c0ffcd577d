/* early_init — allocation at awkward moments: before any constructor runs
 * (.preinit_array, which ld.so calls before even libhakmem's constructor),
 * from a priority-101 constructor, through dlsym(RTLD_NEXT), from
 * pthread_once, atexit/on_exit handlers and a destructor, from pthread key
 * destructors at thread exit, and across dlopen/dlclose of a library that
 * allocates (and has dynamic TLS, allocated by ld.so with malloc). None of it
 * may crash or deadlock (the pytest side runs each with a timeout). */
#include "check.h"

#include <pthread.h>
#include <stdatomic.h>

/* ---- before main ---------------------------------------------------------- */

static char *preinit_block;
static void *preinit_big;
static int preinit_ran;

static void preinit_alloc(int argc, char **argv, char **envp)
{
    (void)argc;
    (void)argv;
    (void)envp;
    preinit_ran = 1;
    preinit_block = malloc(64);
    if (preinit_block)
        memcpy(preinit_block, "allocated in preinit_array", 27);
    preinit_big = calloc(1, 3 << 20);
}
__attribute__((section(".preinit_array"), used)) static void (*const preinit_entry)(int, char **,
                                                                                    char **) = preinit_alloc;

static char *ctor_string;
static void *ctor_blocks[8];
static int ctor_ran;

__attribute__((constructor(101))) static void early_constructor(void)
{
    ctor_ran = 1;
    ctor_string = strdup("allocated in constructor(101)");
    for (int i = 0; i < 8; i++) {
        ctor_blocks[i] = malloc((size_t)1 << (i * 3)); /* 1 B .. 2 MiB */
        if (ctor_blocks[i])
            memset(ctor_blocks[i], i, (size_t)1 << (i * 3));
    }
}

static void t_before_main(void)
{
    CHECK(preinit_ran, "the .preinit_array function did not run");
    REQUIRE(preinit_block, "malloc in .preinit_array returned NULL");
    CHECK_OWNS(preinit_block);
    CHECK(strcmp(preinit_block, "allocated in preinit_array") == 0, "preinit block holds '%.30s'", preinit_block);
    REQUIRE(preinit_big, "calloc(3 MiB) in .preinit_array returned NULL");
    CHECK_OWNS(preinit_big);
    CHECK(find_not_byte(preinit_big, 3 << 20, 0) < 0, "calloc in preinit is not zeroed");
    free(preinit_block);
    free(preinit_big);

    CHECK(ctor_ran, "constructor(101) did not run");
    REQUIRE(ctor_string, "strdup in constructor(101) returned NULL");
    CHECK_OWNS(ctor_string);
    CHECK(strcmp(ctor_string, "allocated in constructor(101)") == 0, "ctor string '%s'", ctor_string);
    free(ctor_string);
    for (int i = 0; i < 8; i++) {
        size_t n = (size_t)1 << (i * 3);
        REQUIRE(ctor_blocks[i], "malloc(%zu) in constructor(101) returned NULL", n);
        CHECK_OWNS(ctor_blocks[i]);
        CHECK(find_not_byte(ctor_blocks[i], n, (unsigned char)i) < 0, "ctor block %d changed", i);
        free(ctor_blocks[i]);
    }
}

/* ---- dlsym(RTLD_NEXT, "malloc"), as interposers do ------------------------ */

static void t_rtld_next(void)
{
    void *(*next_malloc)(size_t) = (void *(*)(size_t))dlsym(RTLD_NEXT, "malloc");
    void (*next_free)(void *) = (void (*)(void *))dlsym(RTLD_NEXT, "free");
    void *(*next_calloc)(size_t, size_t) = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "calloc");
    void *(*next_realloc)(void *, size_t) = (void *(*)(void *, size_t))dlsym(RTLD_NEXT, "realloc");
    REQUIRE(next_malloc && next_free && next_calloc && next_realloc,
            "dlsym(RTLD_NEXT) did not find malloc/free/calloc/realloc");
    if (!hk_glibc_mode()) {
        /* After the executable comes the preloaded libhakmem. */
        Dl_info info;
        CHECK(dladdr((void *)next_malloc, &info) && info.dli_fname && strstr(info.dli_fname, "libhakmem"),
              "dlsym(RTLD_NEXT, malloc) is in %s, not libhakmem", info.dli_fname ? info.dli_fname : "?");
    }
    for (size_t n = 1; n < 1 << 24; n *= 7) {
        char *p = next_malloc(n);
        REQUIRE(p, "RTLD_NEXT malloc(%zu) failed", n);
        CHECK_OWNS(p);
        memset(p, 1, n);
        char *q = next_realloc(p, n * 2);
        REQUIRE(q, "RTLD_NEXT realloc failed");
        free(q); /* interchangeable with the default free */
        void *z = next_calloc(n, 1);
        REQUIRE(z, "RTLD_NEXT calloc failed");
        CHECK_OWNS(z);
        next_free(z);
    }
}

/* ---- environment --------------------------------------------------------- */

/* The pytest side starts this with HAKMEM_* variables set (hakmem reads them
 * while initialising, i.e. during the first malloc, before main); here the
 * environment is also grown and read while allocating. */
static void t_environment(void)
{
    char name[40], value[80];
    for (int i = 0; i < 500; i++) {
        snprintf(name, sizeof name, "HKTEST_ENV_%d", i);
        snprintf(value, sizeof value, "%0*d", i % 70 + 4, i); /* width > digits */
        CHECK(setenv(name, value, 1) == 0, "setenv failed");
        char *p = malloc((size_t)i + 1);
        REQUIRE(p, "malloc failed");
        free(p);
    }
    for (int i = 0; i < 500; i += 7) {
        snprintf(name, sizeof name, "HKTEST_ENV_%d", i);
        const char *v = getenv(name);
        CHECK(v && strlen(v) == (size_t)(i % 70 + 4), "getenv(%s) = %s", name, v ? v : "(null)");
    }
    const char *verbose = getenv("HAKMEM_VERBOSE");
    if (verbose)
        printf("HAKMEM_VERBOSE=%s seen by the program\n", verbose);
}

/* ---- pthread_once --------------------------------------------------------- */

static pthread_once_t once = PTHREAD_ONCE_INIT;
static char **once_table;
static atomic_int once_runs;

static void once_init(void)
{
    atomic_fetch_add(&once_runs, 1);
    once_table = calloc(256, sizeof *once_table);
    if (!once_table)
        return;
    for (int i = 0; i < 256; i++) {
        char buf[32];
        snprintf(buf, sizeof buf, "entry-%d", i);
        once_table[i] = strdup(buf);
    }
}

static void *once_user(void *arg)
{
    (void)arg;
    pthread_once(&once, once_init);
    for (int i = 0; i < 1000; i++) {
        void *p = malloc(16 + (size_t)i);
        free(p);
    }
    return once_table && once_table[255] && strcmp(once_table[255], "entry-255") == 0 ? NULL : (void *)1;
}

static void t_pthread_once(void)
{
    pthread_t t[8];
    for (int i = 0; i < 8; i++)
        REQUIRE(pthread_create(&t[i], NULL, once_user, NULL) == 0, "pthread_create failed");
    for (int i = 0; i < 8; i++) {
        void *ret = NULL;
        pthread_join(t[i], &ret);
        CHECK(ret == NULL, "thread %d saw a bad once_table", i);
    }
    CHECK(atomic_load(&once_runs) == 1, "the once routine ran %d times", atomic_load(&once_runs));
    REQUIRE(once_table, "calloc in the once routine failed");
    CHECK_OWNS(once_table);
    for (int i = 0; i < 256; i++) {
        CHECK_OWNS(once_table[i]);
        free(once_table[i]);
    }
    free(once_table);
}

/* ---- exit-time handlers ---------------------------------------------------- */

static int exit_checks_armed;
static char *kept_until_exit;

/* Exit handlers report on stdout; the pytest side looks for the lines. */
static void exit_handler_allocates(void)
{
    char *s = NULL;
    if (asprintf(&s, "atexit handler: %s", kept_until_exit ? kept_until_exit : "(lost)") < 0 || !s) {
        printf("atexit handler: FAILED asprintf\n");
        return;
    }
    void *big = malloc(8 << 20);
    if (big)
        memset(big, 3, 8 << 20);
    printf("%s %s\n", s, hk_owns(s) && big && hk_owns(big) ? "ok" : "FAILED owns");
    free(big);
    free(s);
    free(kept_until_exit);
    kept_until_exit = NULL;
}

static void on_exit_handler(int status, void *arg)
{
    char *copy = strdup((const char *)arg);
    printf("on_exit handler: status %d, %s %s\n", status, copy ? copy : "(null)",
           copy && hk_owns(copy) ? "ok" : "FAILED");
    free(copy);
}

__attribute__((destructor)) static void late_destructor(void)
{
    if (!exit_checks_armed)
        return;
    void *blocks[100];
    for (int i = 0; i < 100; i++)
        blocks[i] = malloc((size_t)(i + 1) * 100);
    int ok = 1;
    for (int i = 0; i < 100; i++) {
        ok &= blocks[i] != NULL && hk_owns(blocks[i]);
        free(blocks[i]);
    }
    printf("destructor: %s\n", ok ? "ok" : "FAILED");
    fflush(stdout);
}

static void t_exit_handlers(void)
{
    exit_checks_armed = 1;
    kept_until_exit = strdup("block from main");
    REQUIRE(atexit(exit_handler_allocates) == 0, "atexit failed");
    REQUIRE(on_exit(on_exit_handler, "on_exit argument") == 0, "on_exit failed");
}

/* ---- pthread key destructors ---------------------------------------------- */

static pthread_key_t key;
static atomic_int dtor_runs, dtor_bad;

/* Runs at thread exit, possibly after hakmem's own per-thread teardown (its
 * key was created before ours): allocating here must still work. The first
 * run stores a new value, so glibc calls it a second time. */
static void key_destructor(void *value)
{
    atomic_fetch_add(&dtor_runs, 1);
    if (!hk_owns(value))
        atomic_fetch_add(&dtor_bad, 1);
    int second = strcmp((char *)value, "second") == 0;
    free(value);
    for (int i = 0; i < 50; i++) {
        void *p = malloc((size_t)(i * 37 + 1));
        if (!p || !hk_owns(p))
            atomic_fetch_add(&dtor_bad, 1);
        free(p);
    }
    if (!second)
        pthread_setspecific(key, strdup("second"));
}

static void *key_user(void *arg)
{
    (void)arg;
    for (int i = 0; i < 200; i++)
        free(malloc((size_t)i * 3 + 1));
    pthread_setspecific(key, strdup("first"));
    return NULL;
}

static void t_key_destructor(void)
{
    REQUIRE(pthread_key_create(&key, key_destructor) == 0, "pthread_key_create failed");
    enum { THREADS = 64 };
    for (int i = 0; i < THREADS; i += 4) {
        pthread_t t[4];
        for (int k = 0; k < 4; k++)
            REQUIRE(pthread_create(&t[k], NULL, key_user, NULL) == 0, "pthread_create failed");
        for (int k = 0; k < 4; k++)
            pthread_join(t[k], NULL);
    }
    CHECK(atomic_load(&dtor_runs) == 2 * THREADS, "key destructor ran %d times, expected %d", atomic_load(&dtor_runs),
          2 * THREADS);
    CHECK(atomic_load(&dtor_bad) == 0, "%d allocations in key destructors failed or were not hakmem's",
          atomic_load(&dtor_bad));
    pthread_key_delete(key);
}

/* ---- dlopen / dlclose ------------------------------------------------------ */

static atomic_int dl_stop;

static void *dl_background(void *arg)
{
    uint64_t rng = (uint64_t)(uintptr_t)arg;
    while (!atomic_load(&dl_stop)) {
        void *p = malloc(1 + rng_next(&rng) % 5000);
        free(p);
    }
    return NULL;
}

typedef char *(*lib_make_fn)(size_t);
typedef void (*lib_free_fn)(void *);
typedef size_t (*lib_tls_fn)(void);

struct tls_job {
    lib_tls_fn touch;
    size_t result;
};

static void *dl_tls_thread(void *argp)
{
    struct tls_job *job = argp;
    job->result = job->touch(); /* first touch: ld.so mallocs this thread's TLS block */
    return NULL;
}

/* The library to load comes from HKTEST_DLOPEN_LIB (built by the pytest side
 * from tests/lib/dlopen_lib.c). */
static void t_dlopen(void)
{
    const char *path = getenv("HKTEST_DLOPEN_LIB");
    REQUIRE(path && *path, "HKTEST_DLOPEN_LIB is not set (the path of dlopen_lib.so)");
    pthread_t bg[2];
    atomic_store(&dl_stop, 0);
    for (int i = 0; i < 2; i++)
        REQUIRE(pthread_create(&bg[i], NULL, dl_background, (void *)(uintptr_t)(i + 5)) == 0, "create");

    for (int cycle = 0; cycle < 30; cycle++) {
        void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        REQUIRE(h, "dlopen(%s) failed: %s", path, dlerror());
        lib_make_fn make = (lib_make_fn)dlsym(h, "dlopen_lib_make");
        lib_free_fn lfree = (lib_free_fn)dlsym(h, "dlopen_lib_free");
        lib_tls_fn touch = (lib_tls_fn)dlsym(h, "dlopen_lib_touch_tls");
        int (*selftest)(void) = (int (*)(void))dlsym(h, "dlopen_lib_selftest");
        REQUIRE(make && lfree && touch && selftest, "dlopen_lib symbols missing");
        CHECK(selftest() == 0, "the library's constructor allocations are broken");

        char *s = make(1000 + (size_t)cycle); /* allocated in the library, freed here */
        REQUIRE(s, "dlopen_lib_make failed");
        CHECK_OWNS(s);
        free(s);
        char *mine = malloc(100); /* allocated here, freed in the library */
        REQUIRE(mine, "malloc failed");
        lfree(mine);

        struct tls_job jobs[3];
        pthread_t t[3];
        for (int i = 0; i < 3; i++) {
            jobs[i].touch = touch;
            jobs[i].result = 0;
            REQUIRE(pthread_create(&t[i], NULL, dl_tls_thread, &jobs[i]) == 0, "create");
        }
        for (int i = 0; i < 3; i++) {
            pthread_join(t[i], NULL);
            CHECK(jobs[i].result == 8192, "TLS touch in a thread returned %zu", jobs[i].result);
        }
        CHECK(touch() == 8192, "TLS touch in main failed");
        CHECK(dlclose(h) == 0, "dlclose failed: %s", dlerror());
    }

    /* System libraries whose initialisers allocate (libstdc++'s emergency
     * exception pool, for one). */
    static const char *const system_libs[] = {"libstdc++.so.6", "libz.so.1", "libm.so.6"};
    for (size_t i = 0; i < sizeof system_libs / sizeof system_libs[0]; i++) {
        void *h = dlopen(system_libs[i], RTLD_NOW | RTLD_GLOBAL);
        if (!h)
            continue; /* not installed: nothing to learn from it */
        dlclose(h);
    }
    atomic_store(&dl_stop, 1);
    for (int i = 0; i < 2; i++)
        pthread_join(bg[i], NULL);
}

int main(int argc, char **argv)
{
    static const struct subtest tests[] = {
        {"before_main", t_before_main},
        {"rtld_next", t_rtld_next},
        {"environment", t_environment},
        {"pthread_once", t_pthread_once},
        {"exit_handlers", t_exit_handlers},
        {"key_destructor", t_key_destructor},
        {"dlopen", t_dlopen},
    };
    return run_subtests(argc, argv, tests, sizeof tests / sizeof tests[0]);
}
