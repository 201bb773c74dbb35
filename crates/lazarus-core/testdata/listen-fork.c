/* A tiny CRIU dump subject: a listener, a loopback connection to it, a fork.
 * Run with `env -i` so that its pages hold no environment. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
int main(void) {
    for (int fd = 3; fd < 1024; fd++) /* none inherited: they would be dumped too */
        close(fd);
    struct sockaddr_in a = { .sin_family = AF_INET };
    socklen_t l = sizeof a;
    int s = socket(AF_INET, SOCK_STREAM, 0);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(s, (void *)&a, sizeof a) || listen(s, 8) || getsockname(s, (void *)&a, &l))
        return 1;
    int c = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(c, (void *)&a, sizeof a))
        return 1;
    int p = accept(s, NULL, NULL);
    if (p < 0)
        return 1;
    fork();
    sleep(600);
    return 0;
}
