/* The C++ allocation operators: 8 forms of new, 12 of delete, written in
 * C under their mangled names so that libhakmem needs no libstdc++.
 *
 * A failed throwing new calls the installed new-handler until it stops
 * failing, then throws std::bad_alloc, as the standard requires. Both
 * come from libstdc++, referenced weakly: any program that calls
 * operator new has libstdc++ loaded. The nothrow forms return NULL when
 * no handler is installed; a handler that throws from inside a nothrow
 * new propagates its exception (libhakmem, being C, cannot catch it). */
#include <errno.h>
#include <stdlib.h>

#include "alloc.h"

typedef void (*hak_new_handler)(void);
extern hak_new_handler _ZSt15get_new_handlerv(void) __attribute__((weak));
extern void _ZSt17__throw_bad_allocv(void) __attribute__((weak, noreturn));

void *hak_cxx_new_slow(size_t size, size_t align, bool nothrow);

static bool call_new_handler(void)
{
    hak_new_handler handler = _ZSt15get_new_handlerv ? _ZSt15get_new_handlerv() : NULL;
    if (!handler)
        return false;
    handler();
    return true;
}

HAK_NOINLINE void *hak_cxx_new_slow(size_t size, size_t align, bool nothrow)
{
    /* 8-byte blocks serve requests under 16 bytes: not with align 16. */
    size_t want = align >= HAK_MIN_ALIGN && size < HAK_MIN_ALIGN ? HAK_MIN_ALIGN : size;
    for (;;) {
        void *p = align <= HAK_MIN_ALIGN ? hak_alloc_inline(want) : hak_alloc_slow(want, align);
        if (p)
            return p;
        if (!call_new_handler())
            break;
    }
    if (nothrow)
        return NULL;
    if (_ZSt17__throw_bad_allocv)
        _ZSt17__throw_bad_allocv();
    hak_fatal("operator new(%zu) failed and std::bad_alloc cannot be thrown (no libstdc++)", size);
}

HAK_INLINE void *cxx_new(size_t size)
{
    void *p = hak_alloc_inline(size);
    return HAK_LIKELY(p != NULL) ? p : hak_cxx_new_slow(size, HAK_MIN_ALIGN, false);
}

HAK_INLINE void *cxx_new_nothrow(size_t size)
{
    void *p = hak_alloc_inline(size);
    return HAK_LIKELY(p != NULL) ? p : hak_cxx_new_slow(size, HAK_MIN_ALIGN, true);
}

#define NOTHROW_T const void * /* const std::nothrow_t & */

/* clang-format off */
HAK_EXPORT void *_Znwm(size_t size);
HAK_EXPORT void *_Znam(size_t size);
HAK_EXPORT void *_ZnwmRKSt9nothrow_t(size_t size, NOTHROW_T);
HAK_EXPORT void *_ZnamRKSt9nothrow_t(size_t size, NOTHROW_T);
HAK_EXPORT void *_ZnwmSt11align_val_t(size_t size, size_t align);
HAK_EXPORT void *_ZnamSt11align_val_t(size_t size, size_t align);
HAK_EXPORT void *_ZnwmSt11align_val_tRKSt9nothrow_t(size_t size, size_t align, NOTHROW_T);
HAK_EXPORT void *_ZnamSt11align_val_tRKSt9nothrow_t(size_t size, size_t align, NOTHROW_T);
HAK_EXPORT void _ZdlPv(void *p);
HAK_EXPORT void _ZdaPv(void *p);
HAK_EXPORT void _ZdlPvRKSt9nothrow_t(void *p, NOTHROW_T);
HAK_EXPORT void _ZdaPvRKSt9nothrow_t(void *p, NOTHROW_T);
HAK_EXPORT void _ZdlPvm(void *p, size_t size);
HAK_EXPORT void _ZdaPvm(void *p, size_t size);
HAK_EXPORT void _ZdlPvSt11align_val_t(void *p, size_t align);
HAK_EXPORT void _ZdaPvSt11align_val_t(void *p, size_t align);
HAK_EXPORT void _ZdlPvSt11align_val_tRKSt9nothrow_t(void *p, size_t align, NOTHROW_T);
HAK_EXPORT void _ZdaPvSt11align_val_tRKSt9nothrow_t(void *p, size_t align, NOTHROW_T);
HAK_EXPORT void _ZdlPvmSt11align_val_t(void *p, size_t size, size_t align);
HAK_EXPORT void _ZdaPvmSt11align_val_t(void *p, size_t size, size_t align);

void *_Znwm(size_t size) { return cxx_new(size); }
void *_Znam(size_t size) { return cxx_new(size); }
void *_ZnwmRKSt9nothrow_t(size_t size, NOTHROW_T tag) { (void)tag; return cxx_new_nothrow(size); }
void *_ZnamRKSt9nothrow_t(size_t size, NOTHROW_T tag) { (void)tag; return cxx_new_nothrow(size); }
void *_ZnwmSt11align_val_t(size_t size, size_t align) { return hak_cxx_new_slow(size, align, false); }
void *_ZnamSt11align_val_t(size_t size, size_t align) { return hak_cxx_new_slow(size, align, false); }
void *_ZnwmSt11align_val_tRKSt9nothrow_t(size_t size, size_t align, NOTHROW_T tag)
{
    (void)tag;
    return hak_cxx_new_slow(size, align, true);
}
void *_ZnamSt11align_val_tRKSt9nothrow_t(size_t size, size_t align, NOTHROW_T tag)
{
    (void)tag;
    return hak_cxx_new_slow(size, align, true);
}

void _ZdlPv(void *p) { hak_free_inline(p); }
void _ZdaPv(void *p) { hak_free_inline(p); }
void _ZdlPvRKSt9nothrow_t(void *p, NOTHROW_T tag) { (void)tag; hak_free_inline(p); }
void _ZdaPvRKSt9nothrow_t(void *p, NOTHROW_T tag) { (void)tag; hak_free_inline(p); }
void _ZdlPvm(void *p, size_t size) { (void)size; hak_free_inline(p); }
void _ZdaPvm(void *p, size_t size) { (void)size; hak_free_inline(p); }
void _ZdlPvSt11align_val_t(void *p, size_t align) { (void)align; hak_free_inline(p); }
void _ZdaPvSt11align_val_t(void *p, size_t align) { (void)align; hak_free_inline(p); }
/* clang-format on */
void _ZdlPvSt11align_val_tRKSt9nothrow_t(void *p, size_t align, NOTHROW_T tag)
{
    (void)align;
    (void)tag;
    hak_free_inline(p);
}
void _ZdaPvSt11align_val_tRKSt9nothrow_t(void *p, size_t align, NOTHROW_T tag)
{
    (void)align;
    (void)tag;
    hak_free_inline(p);
}
void _ZdlPvmSt11align_val_t(void *p, size_t size, size_t align)
{
    (void)size;
    (void)align;
    hak_free_inline(p);
}
void _ZdaPvmSt11align_val_t(void *p, size_t size, size_t align)
{
    (void)size;
    (void)align;
    hak_free_inline(p);
}
