/* Diagnostics that never allocate: formatted into a stack buffer with
 * vsnprintf (integer and string conversions only) and written with one
 * write(2), so they are safe inside malloc and during initialisation. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hakmem_internal.h"

static int log_fd = 2;
static bool log_is_quiet;

void hak_log_set_fd(int fd)
{
    log_fd = fd;
}

int hak_log_fd(void)
{
    return log_fd;
}

void hak_log_quiet(bool quiet)
{
    log_is_quiet = quiet;
}

static void write_all(int fd, const char *buf, size_t len)
{
    int saved_errno = errno;
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        buf += n;
        len -= (size_t)n;
    }
    errno = saved_errno;
}

static void vlog_line(int fd, const char *prefix, const char *fmt, va_list ap)
{
    char buf[1024];
    size_t len = strlen(prefix);
    memcpy(buf, prefix, len);
    int n = vsnprintf(buf + len, sizeof(buf) - len - 1, fmt, ap);
    if (n < 0)
        n = 0;
    len += (size_t)n < sizeof(buf) - len - 1 ? (size_t)n : sizeof(buf) - len - 2;
    if (len == 0 || buf[len - 1] != '\n')
        buf[len++] = '\n';
    write_all(fd, buf, len);
}

void hak_warn(const char *fmt, ...)
{
    if (log_is_quiet)
        return;
    va_list ap;
    va_start(ap, fmt);
    vlog_line(log_fd, "hakmem: ", fmt, ap);
    va_end(ap);
}

void hak_info(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog_line(log_fd, "hakmem: ", fmt, ap);
    va_end(ap);
}

void hak_fdprintf(int fd, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (n > 0)
        write_all(fd, buf, (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1);
}

void hak_report_misuse(const char *what, const void *p)
{
    /* Misuse is reported even under HAKMEM_QUIET: it is a bug in the
     * program, not a configuration remark. */
    char buf[160];
    int n = snprintf(buf, sizeof(buf), "hakmem: %s: %p (ignored)\n", what, p);
    if (n > 0)
        write_all(2, buf, (size_t)n);
    if (log_fd != 2 && n > 0)
        write_all(log_fd, buf, (size_t)n);
}

void hak_fatal(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog_line(2, "hakmem: fatal: ", fmt, ap);
    va_end(ap);
    abort();
}
