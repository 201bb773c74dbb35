/*
 * crstate MODE ...: workloads that hold the kernel state checkpoint/restore
 * must bring back, each printing one line a second so a test can see that
 * it goes on after a restore, and failing loudly (exit 1) when its state is
 * lost. Built statically into the test image by scripts/build-test-image.sh.
 *
 *   crstate tcp-echo PORT        echo server: answers each line with
 *                                "PID LINE" (PID: the serving process)
 *   crstate tcp-client HOST PORT one connection, a request every 200 ms;
 *                                prints "tcp N port P server S", where P is
 *                                its own port and S the server's pid
 *   crstate unix-dgram PATH      a datagram socket connected to PATH (a
 *                                listener outside the container); sends
 *                                "dgram N" each tick
 *   crstate locks DIR            holds flock(DIR/flock) and a fcntl write
 *                                lock on DIR/fcntl; prints "locks N"
 *   crstate probe-locks DIR      prints "flock busy|free fcntl busy|free"
 *   crstate tree N               N processes in a ring of pipes, each with a
 *                                forwarding thread and an interval timer;
 *                                prints "tree N round R timers T procs P"
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static _Noreturn void die(const char *what) {
    printf("FAILED %s: %s\n", what, strerror(errno));
    exit(1);
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

/* Reads one '\n'-terminated line (without it); -1 at EOF or error. */
static int read_line(int fd, char *buf, size_t size) {
    size_t n = 0;
    while (n + 1 < size) {
        char c;
        ssize_t r = read(fd, &c, 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        if (c == '\n')
            break;
        buf[n++] = c;
    }
    buf[n] = 0;
    return (int)n;
}

static _Noreturn void tcp_echo(int port) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (bind(s, (struct sockaddr *)&a, sizeof a) < 0 || listen(s, 16) < 0)
        die("listen");
    signal(SIGCHLD, SIG_IGN);
    printf("listening %d\n", port);
    for (;;) {
        int c = accept(s, NULL, NULL);
        if (c < 0)
            continue;
        if (fork() == 0) {
            char line[256], out[300];
            while (read_line(c, line, sizeof line) >= 0) {
                int len = snprintf(out, sizeof out, "%d %s\n", getpid(), line);
                if (write(c, out, len) != len)
                    break;
            }
            _exit(0);
        }
        close(c);
    }
}

static int tcp_client(const char *host, int port) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, host, &a.sin_addr);
    for (int i = 0; connect(s, (struct sockaddr *)&a, sizeof a) < 0; i++) {
        if (i == 50)
            die("connect");
        sleep_ms(100);
    }
    struct sockaddr_in me;
    socklen_t len = sizeof me;
    getsockname(s, (struct sockaddr *)&me, &len);
    for (unsigned long n = 0;; n++) {
        char req[64], reply[300];
        int l = snprintf(req, sizeof req, "%lu\n", n);
        if (write(s, req, l) != l)
            die("send");
        if (read_line(s, reply, sizeof reply) < 0)
            die("receive");
        char *sp = strchr(reply, ' ');
        if (!sp || strtoul(sp + 1, NULL, 10) != n) {
            printf("FAILED reply %s to %lu\n", reply, n);
            return 1;
        }
        if (n % 5 == 0)
            printf("tcp %lu port %d server %.*s\n", n / 5, ntohs(me.sin_port),
                   (int)(sp - reply), reply);
        sleep_ms(200);
    }
}

static _Noreturn void unix_dgram(const char *path) {
    int s = socket(AF_UNIX, SOCK_DGRAM, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    strncpy(a.sun_path, path, sizeof a.sun_path - 1);
    for (int i = 0; connect(s, (struct sockaddr *)&a, sizeof a) < 0; i++) {
        if (i == 50)
            die("connect");
        sleep_ms(100);
    }
    for (unsigned long n = 0;; n++) {
        char msg[64];
        int l = snprintf(msg, sizeof msg, "dgram %lu", n);
        if (send(s, msg, l, 0) != l)
            die("send");
        printf("%s\n", msg);
        sleep(1);
    }
}

static void lock_paths(const char *dir, char *f, char *p, size_t size) {
    snprintf(f, size, "%s/flock", dir);
    snprintf(p, size, "%s/fcntl", dir);
}

static _Noreturn void locks(const char *dir) {
    char f[512], p[512];
    lock_paths(dir, f, p, sizeof f);
    int a = open(f, O_RDWR | O_CREAT, 0600), b = open(p, O_RDWR | O_CREAT, 0600);
    if (a < 0 || b < 0)
        die("open");
    if (flock(a, LOCK_EX | LOCK_NB) < 0)
        die("flock");
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    if (fcntl(b, F_SETLK, &fl) < 0)
        die("fcntl");
    for (unsigned long n = 0;; n++) {
        printf("locks %lu\n", n);
        sleep(1);
    }
}

static int probe_locks(const char *dir) {
    char f[512], p[512];
    lock_paths(dir, f, p, sizeof f);
    int a = open(f, O_RDWR), b = open(p, O_RDWR);
    if (a < 0 || b < 0)
        die("open");
    int flock_busy = flock(a, LOCK_EX | LOCK_NB) < 0 && errno == EWOULDBLOCK;
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    if (fcntl(b, F_GETLK, &fl) < 0)
        die("F_GETLK");
    printf("flock %s fcntl %s\n", flock_busy ? "busy" : "free",
           fl.l_type != F_UNLCK ? "busy" : "free");
    return 0;
}

/* tree: each member forwards a token around the ring in a thread, adding
 * its timer count; the root checks the ring's arithmetic every round. */
struct token {
    uint64_t round;
    uint64_t hops;
    uint64_t timers;
};

static volatile sig_atomic_t timer_fires;
static int ring_in, ring_out;

static void on_alarm(int sig) {
    (void)sig;
    timer_fires++;
}

static void *forward(void *arg) {
    (void)arg;
    struct token t;
    for (;;) {
        if (read(ring_in, &t, sizeof t) != sizeof t)
            _exit(1);
        t.hops++;
        t.timers += timer_fires;
        if (write(ring_out, &t, sizeof t) != sizeof t)
            _exit(1);
    }
    return NULL;
}

/* The crstate processes in our pid namespace. */
static int count_procs(void) {
    DIR *proc = opendir("/proc");
    struct dirent *e;
    int n = 0;
    while (proc && (e = readdir(proc))) {
        char path[300], comm[64] = "";
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue; /* self, thread-self and the rest */
        snprintf(path, sizeof path, "/proc/%s/comm", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        if (fgets(comm, sizeof comm, f) && !strcmp(comm, "crstate\n"))
            n++;
        fclose(f);
    }
    if (proc)
        closedir(proc);
    return n;
}

static int tree(int members) {
    int first[2];
    if (pipe(first) < 0)
        die("pipe");
    int in = first[0];
    for (int i = 1; i < members; i++) {
        int next[2];
        if (pipe(next) < 0)
            die("pipe");
        if (fork() == 0) {
            close(first[1]);
            close(next[0]);
            ring_in = in;
            ring_out = next[1];
            signal(SIGALRM, on_alarm);
            struct itimerval it = {{0, 100000}, {0, 100000}};
            setitimer(ITIMER_REAL, &it, NULL);
            pthread_t th;
            pthread_create(&th, NULL, forward, NULL);
            for (;;)
                pause();
        }
        close(in);
        close(next[1]);
        in = next[0];
    }
    /* The root: a timerfd paces the rounds. */
    int tfd = timerfd_create(CLOCK_MONOTONIC, 0);
    struct itimerspec ts = {{1, 0}, {1, 0}};
    timerfd_settime(tfd, 0, &ts, NULL);
    uint64_t last_timers = 0;
    for (uint64_t round = 0;; round++) {
        struct token t = {round, 0, 0};
        if (write(first[1], &t, sizeof t) != sizeof t)
            die("ring write");
        if (read(in, &t, sizeof t) != sizeof t)
            die("ring read");
        if (t.round != round || t.hops != (uint64_t)members - 1) {
            printf("FAILED ring: round %llu hops %llu\n", (unsigned long long)t.round,
                   (unsigned long long)t.hops);
            return 1;
        }
        if (round > 0 && t.timers <= last_timers) {
            printf("FAILED timers stopped at %llu\n", (unsigned long long)t.timers);
            return 1;
        }
        last_timers = t.timers;
        printf("tree %d round %llu timers %llu procs %d\n", members,
               (unsigned long long)round, (unsigned long long)t.timers, count_procs());
        uint64_t expirations;
        if (read(tfd, &expirations, sizeof expirations) != sizeof expirations)
            die("timerfd");
    }
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *mode = argc > 1 ? argv[1] : "";
    if (!strcmp(mode, "tcp-echo") && argc == 3)
        tcp_echo(atoi(argv[2]));
    if (!strcmp(mode, "tcp-client") && argc == 4)
        return tcp_client(argv[2], atoi(argv[3]));
    if (!strcmp(mode, "unix-dgram") && argc == 3)
        unix_dgram(argv[2]);
    if (!strcmp(mode, "locks") && argc == 3)
        locks(argv[2]);
    if (!strcmp(mode, "probe-locks") && argc == 3)
        return probe_locks(argv[2]);
    if (!strcmp(mode, "tree") && argc == 3)
        return tree(atoi(argv[2]));
    fprintf(stderr, "usage: see the comment at the top of crstate.c\n");
    return 2;
}
