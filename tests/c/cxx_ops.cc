// cxx_ops — C++ allocation through hakmem: the 8 forms of operator new and
// the 12 of operator delete, bad_alloc, the new-handler protocol, nothrow
// failures, and standard containers churned across threads.
#include "check.h"

#include <atomic>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <sys/resource.h>
#include <sys/wait.h>

namespace
{

// volatile: keep the compiler from seeing (and warning about) the sizes.
volatile size_t v_huge = SIZE_MAX / 2;
volatile size_t v_size_max = SIZE_MAX;

const size_t kSizes[] = {1, 24, 100, 1000, 5000, 40000, 300000, 5u << 20};
const size_t kAligns[] = {32, 64, 256, 4096, 65536, 2u << 20};

void check_new_block(const char *form, void *p, size_t n, size_t align)
{
    REQUIRE(p != nullptr, "%s(%zu, align %zu) returned nullptr", form, n, align);
    CHECK_OWNS(p);
    CHECK(IS_ALIGNED(p, align), "%s(%zu) = %p is not %zu-byte aligned", form, n, p, align);
    memset(p, 0x3C, n);
}

// Every form of new, each freed by its natural delete.
void t_new_forms()
{
    for (size_t n : kSizes) {
        void *p = ::operator new(n);
        check_new_block("operator new", p, n, 16);
        ::operator delete(p);
        p = ::operator new[](n);
        check_new_block("operator new[]", p, n, 16);
        ::operator delete[](p);
        p = ::operator new(n, std::nothrow);
        check_new_block("operator new(nothrow)", p, n, 16);
        ::operator delete(p, std::nothrow);
        p = ::operator new[](n, std::nothrow);
        check_new_block("operator new[](nothrow)", p, n, 16);
        ::operator delete[](p, std::nothrow);
        for (size_t a : kAligns) {
            std::align_val_t al{a};
            p = ::operator new(n, al);
            check_new_block("operator new(align)", p, n, a);
            ::operator delete(p, al);
            p = ::operator new[](n, al);
            check_new_block("operator new[](align)", p, n, a);
            ::operator delete[](p, al);
            p = ::operator new(n, al, std::nothrow);
            check_new_block("operator new(align, nothrow)", p, n, a);
            ::operator delete(p, al, std::nothrow);
            p = ::operator new[](n, al, std::nothrow);
            check_new_block("operator new[](align, nothrow)", p, n, a);
            ::operator delete[](p, al, std::nothrow);
        }
    }
    // new-expressions too, with objects that need the alignment.
    struct alignas(256) Wide {
        char bytes[300];
    };
    Wide *w = new Wide;
    check_new_block("new Wide", w, sizeof *w, 256);
    delete w;
    Wide *ws = new Wide[7];
    CHECK(IS_ALIGNED(ws, 256), "new Wide[7] = %p is not 256-byte aligned", (void *)ws);
    delete[] ws;
}

// Each of the 12 deletes on blocks of every size; the block is really
// released (check.h, CHECK_RELEASED).
void t_delete_forms()
{
    for (size_t n : kSizes) {
        std::align_val_t al{64};
        void *p;
        uintptr_t addr;
#define DELETE_CASE(make, release) \
    p = make;                      \
    CHECK_OWNS(p);                 \
    addr = ADDR_OF(p);             \
    release;                       \
    CHECK_RELEASED_BY(addr, n, make, ::free)
        DELETE_CASE(::operator new(n), ::operator delete(p));
        DELETE_CASE(::operator new[](n), ::operator delete[](p));
        DELETE_CASE(::operator new(n), ::operator delete(p, std::nothrow));
        DELETE_CASE(::operator new[](n), ::operator delete[](p, std::nothrow));
        DELETE_CASE(::operator new(n), ::operator delete(p, n));
        DELETE_CASE(::operator new[](n), ::operator delete[](p, n));
        DELETE_CASE(::operator new(n, al), ::operator delete(p, al));
        DELETE_CASE(::operator new[](n, al), ::operator delete[](p, al));
        DELETE_CASE(::operator new(n, al), ::operator delete(p, al, std::nothrow));
        DELETE_CASE(::operator new[](n, al), ::operator delete[](p, al, std::nothrow));
        DELETE_CASE(::operator new(n, al), ::operator delete(p, n, al));
        DELETE_CASE(::operator new[](n, al), ::operator delete[](p, n, al));
#undef DELETE_CASE
    }
    // Deleting nullptr is a no-op in every form.
    std::align_val_t al{64};
    ::operator delete(nullptr);
    ::operator delete[](nullptr);
    ::operator delete(nullptr, std::nothrow);
    ::operator delete[](nullptr, std::nothrow);
    ::operator delete(nullptr, al);
    ::operator delete[](nullptr, al);
    ::operator delete(nullptr, al, std::nothrow);
    ::operator delete[](nullptr, al, std::nothrow);
}

template <typename F> bool throws_bad_alloc(F f)
{
    try {
        f();
    } catch (const std::bad_alloc &) {
        return true;
    } catch (...) {
        return false;
    }
    return false;
}

// True when the symbol the program binds to is defined in libhakmem.
bool hakmem_defines(const char *mangled)
{
    void *sym = dlsym(RTLD_DEFAULT, mangled);
    Dl_info info;
    return sym && dladdr(sym, &info) && info.dli_fname && strstr(info.dli_fname, "libhakmem");
}

// libstdc++ 12's aligned operator new rounds the size up to the alignment
// without an overflow check, so SIZE_MAX wraps to 0 and "succeeds". Only
// asked of an aligned new that hakmem itself defines.
bool aligned_new_handles_size_max()
{
    return !hk_glibc_mode() && hakmem_defines("_ZnwmSt11align_val_t");
}

void t_bad_alloc()
{
    const size_t sizes[] = {v_huge, v_size_max, v_size_max - 4096, (size_t)PTRDIFF_MAX + 1};
    for (size_t n : sizes) {
        CHECK(throws_bad_alloc([n] { ::operator delete(::operator new(n)); }),
              "operator new(%#zx) did not throw std::bad_alloc", n);
        CHECK(throws_bad_alloc([n] { ::operator delete[](::operator new[](n)); }),
              "operator new[](%#zx) did not throw std::bad_alloc", n);
        if (n == SIZE_MAX && !aligned_new_handles_size_max())
            continue;
        CHECK(throws_bad_alloc([n] {
                  std::align_val_t al{4096};
                  ::operator delete(::operator new(n, al), al);
              }),
              "operator new(%#zx, align 4096) did not throw std::bad_alloc", n);
        CHECK(throws_bad_alloc([n] {
                  std::align_val_t al{64};
                  ::operator delete[](::operator new[](n, al), al);
              }),
              "operator new[](%#zx, align 64) did not throw std::bad_alloc", n);
    }
    // The allocator is fine afterwards.
    std::vector<int> v(1000, 7);
    CHECK_OWNS(v.data());
}

int g_handler_calls;

// Gives up after the third call by uninstalling itself: operator new must
// then throw bad_alloc.
void counting_handler()
{
    if (++g_handler_calls >= 3)
        std::set_new_handler(nullptr);
}

void t_new_handler()
{
    struct Form {
        const char *name;
        void (*call)(size_t);
    };
    const Form forms[] = {
        {"operator new", [](size_t n) { ::operator delete(::operator new(n)); }},
        {"operator new[]", [](size_t n) { ::operator delete[](::operator new[](n)); }},
        {"operator new(align)",
         [](size_t n) {
             std::align_val_t al{128};
             ::operator delete(::operator new(n, al), al);
         }},
        {"operator new[](align)",
         [](size_t n) {
             std::align_val_t al{128};
             ::operator delete[](::operator new[](n, al), al);
         }},
    };
    for (const Form &f : forms) {
        g_handler_calls = 0;
        std::set_new_handler(counting_handler);
        bool threw = throws_bad_alloc([&] { f.call(v_huge); });
        CHECK(threw, "%s(huge) with a new-handler did not throw bad_alloc", f.name);
        CHECK(g_handler_calls == 3,
              "%s(huge): the new-handler was called %d times, expected 3 (it uninstalls itself "
              "on the third call)",
              f.name, g_handler_calls);
        CHECK(std::get_new_handler() == nullptr, "the handler is still installed");
    }
    // A handler may also give up by throwing bad_alloc itself.
    g_handler_calls = 0;
    std::set_new_handler([] {
        ++g_handler_calls;
        throw std::bad_alloc();
    });
    CHECK(throws_bad_alloc([] { ::operator delete(::operator new(v_huge)); }),
          "operator new with a throwing handler did not throw bad_alloc");
    CHECK(g_handler_calls == 1, "throwing handler called %d times, expected 1", g_handler_calls);
    std::set_new_handler(nullptr);
}

// The classic use: the handler frees an emergency reserve and the retried
// allocation then succeeds. Real memory pressure comes from RLIMIT_AS, in a
// child process.
void *g_reserve;

void reserve_handler()
{
    ++g_handler_calls;
    if (g_reserve) {
        free(g_reserve);
        g_reserve = nullptr;
    } else {
        std::set_new_handler(nullptr); // nothing left to give: let it throw
    }
}

void handler_frees_reserve_child()
{
    const size_t reserve = 64 * MiB, want = 48 * MiB;
    g_reserve = malloc(reserve);
    REQUIRE(g_reserve, "malloc(64 MiB) reserve failed");
    memset(g_reserve, 1, reserve);
    // Also warm up the exception machinery before the limit is set.
    throws_bad_alloc([] { throw std::bad_alloc(); });
    struct rlimit rl;
    rl.rlim_cur = rl.rlim_max = vsize_bytes() + 32 * MiB; // < want, > want once the reserve goes
    REQUIRE(setrlimit(RLIMIT_AS, &rl) == 0, "setrlimit: %s", strerror(errno));
    g_handler_calls = 0;
    std::set_new_handler(reserve_handler);
    void *p = nullptr;
    try {
        p = ::operator new(want);
    } catch (const std::bad_alloc &) {
        CHECK(0,
              "operator new(48 MiB) threw bad_alloc although the handler freed a 64 MiB reserve "
              "(handler called %d times): freed memory was not given back or reused",
              g_handler_calls);
    }
    CHECK(g_handler_calls >= 1, "the new-handler was never called: the 48 MiB did fit at once?");
    if (p) {
        CHECK_OWNS(p);
        memset(p, 2, want);
        ::operator delete(p);
    }
    std::set_new_handler(nullptr);
}

void t_new_handler_reserve()
{
    fflush(nullptr);
    pid_t pid = fork();
    REQUIRE(pid >= 0, "fork failed");
    if (pid == 0) {
        check_failures = 0; /* the child's verdict is its own */
        alarm(60);
        handler_frees_reserve_child();
        _exit(check_failures ? 1 : 0);
    }
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid, "waitpid failed");
    if (WIFSIGNALED(status))
        CHECK(0, "child killed by signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
    else
        CHECK(WEXITSTATUS(status) == 0, "child exited with %d", WEXITSTATUS(status));
}

// nothrow forms return nullptr instead of throwing.
void t_nothrow()
{
    const size_t sizes[] = {v_huge, v_size_max, (size_t)PTRDIFF_MAX + 1};
    for (size_t n : sizes) {
        std::align_val_t al{256};
        void *p = ::operator new(n, std::nothrow);
        CHECK(p == nullptr, "operator new(%#zx, nothrow) returned %p", n, p);
        p = ::operator new[](n, std::nothrow);
        CHECK(p == nullptr, "operator new[](%#zx, nothrow) returned %p", n, p);
        if (n == SIZE_MAX && !aligned_new_handles_size_max())
            continue; // see aligned_new_handles_size_max
        p = ::operator new(n, al, std::nothrow);
        CHECK(p == nullptr, "operator new(%#zx, align, nothrow) returned %p", n, p);
        p = ::operator new[](n, al, std::nothrow);
        CHECK(p == nullptr, "operator new[](%#zx, align, nothrow) returned %p", n, p);
    }
    int *q = new (std::nothrow) int[100];
    CHECK(q != nullptr, "new (nothrow) int[100] failed");
    CHECK_OWNS(q);
    delete[] q;
}

// nothrow new is "call operator new, return nullptr if it throws": the
// new-handler runs first.
void t_nothrow_handler()
{
    g_handler_calls = 0;
    std::set_new_handler(counting_handler);
    void *p = ::operator new(v_huge, std::nothrow);
    CHECK(p == nullptr, "operator new(huge, nothrow) returned %p", p);
    CHECK(g_handler_calls == 3, "nothrow new called the new-handler %d times, expected 3", g_handler_calls);
    g_handler_calls = 0;
    std::set_new_handler(counting_handler);
    p = ::operator new (v_huge, std::align_val_t{64}, std::nothrow);
    CHECK(p == nullptr, "operator new(huge, align, nothrow) returned %p", p);
    CHECK(g_handler_calls == 3, "aligned nothrow new called the new-handler %d times, expected 3", g_handler_calls);
    std::set_new_handler(nullptr);
}

struct Payload {
    std::vector<int> numbers;
    std::string text;
};

// Standard containers and shared_ptr churned by 4 threads, with objects
// handed between threads so that many frees happen on a thread other than
// the allocating one; exceptions (heap-allocated) thrown along the way.
void t_containers_threads()
{
    std::mutex mu;
    std::deque<std::shared_ptr<Payload>> handoff;
    std::atomic<int> failures{0}, not_owned{0};
    auto worker = [&](int id) {
        uint64_t rng = 1000 + (uint64_t)id;
        std::map<int, std::string> m;
        std::unordered_map<std::string, std::vector<double>> um;
        for (int iter = 0; iter < 3000; iter++) {
            std::vector<std::string> words;
            for (int i = 0; i < 20; i++)
                words.emplace_back(8 + rng_next(&rng) % 200, (char)('a' + i));
            // A short string lives inside the string object (SSO): only a
            // long one has a heap buffer to check.
            const std::string &last = words.back();
            if (!hk_owns(words.data()) || (last.capacity() > 15 && !hk_owns(last.data())))
                not_owned++;
            m[(int)(rng_next(&rng) % 500)] = words[3];
            um[words[5].substr(0, 12)].push_back(iter);
            if (m.size() > 300)
                m.erase(m.begin());
            if (um.size() > 50)
                um.clear();

            std::shared_ptr<Payload> sp(new Payload);
            sp->numbers.assign(rng_next(&rng) % 2000, id);
            sp->text = words[7] + words[9];
            if (!hk_owns(sp.get()))
                not_owned++;
            std::shared_ptr<Payload> theirs;
            {
                std::lock_guard<std::mutex> lock(mu);
                handoff.push_back(std::move(sp));
                if (handoff.size() > 64) {
                    theirs = std::move(handoff.front()); // most likely another thread's
                    handoff.pop_front();
                }
            }
            if (theirs) {
                int owner = theirs->numbers.empty() ? -1 : theirs->numbers[0];
                for (int x : theirs->numbers)
                    if (x != owner)
                        failures++;
            }
            if (iter % 100 == 0) {
                try {
                    throw std::runtime_error(words[1]);
                } catch (const std::exception &e) {
                    if (std::string(e.what()) != words[1])
                        failures++;
                }
            }
        }
    };
    std::vector<std::thread> threads;
    for (int i = 0; i < 4; i++)
        threads.emplace_back(worker, i);
    for (auto &t : threads)
        t.join();
    handoff.clear();
    CHECK(failures.load() == 0, "%d corrupted payloads or exception messages seen by the workers", failures.load());
    CHECK(not_owned.load() == 0, "%d container buffers were not hakmem blocks", not_owned.load());
}

std::atomic<int> g_tls_bad{0};

// A thread_local object whose destructor allocates and frees runs after the
// thread's last ordinary allocation, possibly after hakmem's own per-thread
// teardown: it must work and not leak or crash.
struct TlsHolder {
    std::vector<std::string> items;
    ~TlsHolder()
    {
        std::string s(5000, 'z');
        std::vector<int> v(3000, 1);
        items.emplace_back(s);
        if (!hk_owns(s.data()) || !hk_owns(v.data()))
            g_tls_bad++;
    }
};
thread_local TlsHolder tls_holder;

void t_thread_local_dtor()
{
    for (int round = 0; round < 50; round++) {
        std::vector<std::thread> threads;
        for (int i = 0; i < 4; i++)
            threads.emplace_back([] {
                for (int k = 0; k < 100; k++)
                    tls_holder.items.emplace_back(100 + k, 'q');
            });
        for (auto &t : threads)
            t.join();
    }
    CHECK(g_tls_bad.load() == 0, "%d thread_local destructors got blocks hakmem does not own", g_tls_bad.load());
}

// hakmem exports the replaceable operators itself (src/hakmem.map): the
// definitions the program binds to are libhakmem's, not libstdc++'s.
void t_operators_are_hakmem()
{
    static const char *const names[] = {
        "_Znwm",
        "_Znam",
        "_ZnwmRKSt9nothrow_t",
        "_ZnamRKSt9nothrow_t",
        "_ZnwmSt11align_val_t",
        "_ZnamSt11align_val_t",
        "_ZnwmSt11align_val_tRKSt9nothrow_t",
        "_ZnamSt11align_val_tRKSt9nothrow_t",
        "_ZdlPv",
        "_ZdaPv",
        "_ZdlPvRKSt9nothrow_t",
        "_ZdaPvRKSt9nothrow_t",
        "_ZdlPvm",
        "_ZdaPvm",
        "_ZdlPvSt11align_val_t",
        "_ZdaPvSt11align_val_t",
        "_ZdlPvSt11align_val_tRKSt9nothrow_t",
        "_ZdaPvSt11align_val_tRKSt9nothrow_t",
        "_ZdlPvmSt11align_val_t",
        "_ZdaPvmSt11align_val_t",
    };
    if (hk_glibc_mode())
        return;
    for (const char *name : names)
        (void)HAKMEM_SYMBOL(name);
}

} // namespace

int main(int argc, char **argv)
{
    static const struct subtest tests[] = {
        {"new_forms", t_new_forms},
        {"delete_forms", t_delete_forms},
        {"bad_alloc", t_bad_alloc},
        {"new_handler", t_new_handler},
        {"new_handler_reserve", t_new_handler_reserve},
        {"nothrow", t_nothrow},
        {"nothrow_handler", t_nothrow_handler},
        {"containers_threads", t_containers_threads},
        {"thread_local_dtor", t_thread_local_dtor},
        {"operators_are_hakmem", t_operators_are_hakmem},
    };
    return run_subtests(argc, argv, tests, sizeof tests / sizeof tests[0]);
}
