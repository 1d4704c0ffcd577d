/* build/hakmem: hakmem's command line tool.
 *
 *   hakmem trace SCRIPT.bt -- CMD [ARGS...]   run CMD under hakmem with the
 *                                            bpftrace script attached from
 *                                            CMD's first allocation
 *   hakmem trace SCRIPT.bt -p PID             attach to a running process
 *
 * bpftrace 0.17 cannot attach USDT probes of an LD_PRELOADed library with
 * -c (the library is not mapped yet when it resolves them). So the launcher
 * starts CMD with LD_PRELOAD and HAKMEM_TRACE_WAIT=<CMD's pid>; hakmem stops
 * the process (SIGSTOP) at initialisation, before serving its first
 * allocation; the launcher starts `bpftrace -p PID` with the script plus a
 * BEGIN clause that prints a marker once every probe is attached, then
 * resumes CMD. When CMD exits, bpftrace gets SIGINT (so it prints its maps)
 * and the launcher exits with CMD's status. Probes are named
 * usdt:*:hakmem:NAME in the script (with -p, * is the process's libraries). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define READY_MARK "__hakmem_trace_ready__"

static void usage(void)
{
    fprintf(stderr, "usage: hakmem trace SCRIPT.bt -- CMD [ARGS...]\n"
                    "       hakmem trace SCRIPT.bt -p PID\n");
    exit(2);
}

/* The libhakmem.so next to this program (build/), else HAKMEM_LIB. */
static void library_path(char *out, size_t len)
{
    const char *env = getenv("HAKMEM_LIB");
    if (env && *env) {
        snprintf(out, len, "%s", env);
        return;
    }
    char self[PATH_MAX - 32]; /* room for "/libhakmem.so" in out */
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n < 0) {
        perror("hakmem: /proc/self/exe");
        exit(1);
    }
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    *slash = '\0';
    snprintf(out, len, "%s/libhakmem.so", self);
}

static int process_maps_hakmem(pid_t pid)
{
    char path[64], line[4096];
    snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    int found = 0;
    while (!found && fgets(line, sizeof(line), f))
        found = strstr(line, "libhakmem") != NULL;
    fclose(f);
    return found;
}

/* Where the script's own BEGIN block opens (just past its '{'), NULL when
 * it has no BEGIN probe; exits when BEGIN shares a block with other probes.
 * bpftrace 0.17 accepts one BEGIN probe only, so the READY marker goes into
 * the script's own. Comments and strings are skipped. */
static char *begin_block(const char *script, char *text)
{
    bool token_start = true;
    for (char *p = text; *p;) {
        if (p[0] == '/' && p[1] == '/') {
            while (*p && *p != '\n')
                p++;
            continue;
        }
        if (p[0] == '/' && p[1] == '*') {
            char *end = strstr(p + 2, "*/");
            p = end ? end + 2 : p + strlen(p);
            continue;
        }
        if (*p == '"') {
            for (p++; *p && *p != '"'; p++)
                if (*p == '\\' && p[1])
                    p++;
            if (*p)
                p++;
            token_start = false;
            continue;
        }
        bool word = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_';
        if (token_start && strncmp(p, "BEGIN", 5) == 0) {
            char *q = p + 5;
            bool ends =
                !((*q >= 'A' && *q <= 'Z') || (*q >= 'a' && *q <= 'z') || (*q >= '0' && *q <= '9') || *q == '_');
            if (ends) {
                while (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r')
                    q++;
                if (*q == '{')
                    return q + 1;
                fprintf(stderr,
                        "hakmem: %s: its BEGIN probe shares a block with other probes; give BEGIN a block of its "
                        "own (hakmem trace adds a line to it)\n",
                        script);
                exit(2);
            }
        }
        token_start = !word && *p != '.' && *p != ':';
        p++;
    }
    return NULL;
}

/* The user's script plus the READY marker, in a temporary file. */
static void write_script(const char *script, char *tmp, size_t len)
{
    FILE *in = fopen(script, "r");
    if (!in) {
        fprintf(stderr, "hakmem: cannot read %s: %s\n", script, strerror(errno));
        exit(2);
    }
    size_t size = 0, cap = 8192;
    char *text = malloc(cap + 1);
    size_t n;
    while (text && (n = fread(text + size, 1, cap - size, in)) > 0) {
        size += n;
        if (size == cap) {
            cap *= 2;
            text = realloc(text, cap + 1);
        }
    }
    fclose(in);
    if (!text) {
        fprintf(stderr, "hakmem: out of memory reading %s\n", script);
        exit(1);
    }
    text[size] = 0;
    snprintf(tmp, len, "/tmp/hakmem-trace-XXXXXX.bt");
    int fd = mkstemps(tmp, 3);
    if (fd < 0) {
        perror("hakmem: mkstemps");
        exit(1);
    }
    FILE *out = fdopen(fd, "w");
    char *open_brace = begin_block(script, text);
    if (open_brace) {
        fwrite(text, 1, (size_t)(open_brace - text), out);
        fprintf(out, " printf(\"%s\\n\"); ", READY_MARK);
        fputs(open_brace, out);
    } else {
        fputs(text, out);
        fprintf(out, "\nBEGIN { printf(\"%s\\n\"); }\n", READY_MARK);
    }
    free(text);
    fclose(out);
}

static pid_t start_bpftrace(const char *script, pid_t target, int *out_fd)
{
    int pipefd[2];
    if (pipe(pipefd) < 0) {
        perror("hakmem: pipe");
        exit(1);
    }
    pid_t pid = fork();
    if (pid < 0) {
        perror("hakmem: fork");
        exit(1);
    }
    if (pid == 0) {
        dup2(pipefd[1], STDOUT_FILENO);
        close(pipefd[0]);
        close(pipefd[1]);
        char pidarg[32];
        snprintf(pidarg, sizeof(pidarg), "%d", (int)target);
        execlp("bpftrace", "bpftrace", "-B", "line", "-p", pidarg, script, (char *)NULL);
        fprintf(stderr, "hakmem: cannot run bpftrace: %s (scripts/deps.sh installs it)\n", strerror(errno));
        _exit(127);
    }
    close(pipefd[1]);
    *out_fd = pipefd[0];
    return pid;
}

/* Copy bpftrace's output to ours until the READY marker (returns 1) or
 * its end (returns 0). */
static int forward_until_ready(int fd)
{
    char line[8192];
    size_t used = 0;
    for (;;) {
        ssize_t n = read(fd, line + used, 1);
        if (n <= 0)
            return 0;
        if (line[used] == '\n' || used == sizeof(line) - 2) {
            line[used + 1] = '\0';
            if (strstr(line, READY_MARK))
                return 1;
            fputs(line, stdout);
            fflush(stdout);
            used = 0;
        } else {
            used++;
        }
    }
}

static void forward_all(int fd)
{
    char buf[8192];
    ssize_t n;
    while ((n = read(fd, buf, sizeof(buf))) > 0)
        fwrite(buf, 1, (size_t)n, stdout);
    fflush(stdout);
}

static int exit_code(int status)
{
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return 1;
}

static int trace_command(const char *script, char **cmd)
{
    char lib[PATH_MAX];
    library_path(lib, sizeof(lib));
    if (access(lib, R_OK) != 0) {
        fprintf(stderr, "hakmem: %s not found (run make, or set HAKMEM_LIB)\n", lib);
        return 2;
    }
    char tmp[64];
    write_script(script, tmp, sizeof(tmp));

    pid_t child = fork();
    if (child < 0) {
        perror("hakmem: fork");
        return 1;
    }
    if (child == 0) {
        char wait_pid[32], preload[PATH_MAX + 4096];
        snprintf(wait_pid, sizeof(wait_pid), "%d", (int)getpid());
        const char *old = getenv("LD_PRELOAD");
        snprintf(preload, sizeof(preload), "%s%s%s", lib, old && *old ? " " : "", old ? old : "");
        setenv("HAKMEM_TRACE_WAIT", wait_pid, 1);
        setenv("LD_PRELOAD", preload, 1);
        execvp(cmd[0], cmd);
        fprintf(stderr, "hakmem: cannot run %s: %s\n", cmd[0], strerror(errno));
        _exit(127);
    }
    int status;
    if (waitpid(child, &status, WUNTRACED) < 0) {
        perror("hakmem: waitpid");
        return 1;
    }
    if (!WIFSTOPPED(status)) {
        /* Never reached hakmem's initialisation (exec failed, or hakmem
         * was not loaded): nothing to trace. */
        unlink(tmp);
        return exit_code(status);
    }
    int out;
    pid_t tracer = start_bpftrace(tmp, child, &out);
    int ready = forward_until_ready(out);
    unlink(tmp);
    if (!ready)
        fprintf(stderr, "hakmem: bpftrace ended before attaching; running %s untraced\n", cmd[0]);
    kill(child, SIGCONT);
    /* Wait for CMD; keep bpftrace's output flowing meanwhile. */
    for (;;) {
        pid_t r = waitpid(child, &status, WNOHANG);
        if (r == child && (WIFEXITED(status) || WIFSIGNALED(status)))
            break;
        struct pollfd p = {out, POLLIN, 0};
        if (poll(&p, 1, 100) > 0) {
            char buf[8192];
            ssize_t n = read(out, buf, sizeof(buf));
            if (n > 0) {
                fwrite(buf, 1, (size_t)n, stdout);
                fflush(stdout);
            }
        }
    }
    kill(tracer, SIGINT); /* bpftrace prints its maps on SIGINT */
    forward_all(out);
    int tracer_status;
    waitpid(tracer, &tracer_status, 0);
    return exit_code(status);
}

static int trace_pid(const char *script, const char *pid_text)
{
    char *end;
    long pid = strtol(pid_text, &end, 10);
    if (*end || pid <= 0) {
        fprintf(stderr, "hakmem: not a PID: %s\n", pid_text);
        return 2;
    }
    int maps = process_maps_hakmem((pid_t)pid);
    if (maps < 0) {
        fprintf(stderr, "hakmem: no process %ld\n", pid);
        return 1;
    }
    if (maps == 0) {
        fprintf(stderr, "hakmem: process %ld does not use hakmem (no libhakmem mapped)\n", pid);
        return 1;
    }
    execlp("bpftrace", "bpftrace", "-B", "line", "-p", pid_text, script, (char *)NULL);
    fprintf(stderr, "hakmem: cannot run bpftrace: %s\n", strerror(errno));
    return 127;
}

int main(int argc, char **argv)
{
    if (argc < 3 || strcmp(argv[1], "trace") != 0)
        usage();
    const char *script = argv[2];
    if (argc >= 5 && strcmp(argv[3], "-p") == 0)
        return trace_pid(script, argv[4]);
    if (argc >= 5 && strcmp(argv[3], "--") == 0)
        return trace_command(script, argv + 4);
    usage();
}
