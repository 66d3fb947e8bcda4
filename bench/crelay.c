/*
 * A minimal chat relay in C on epoll, a reference for the benchmark.
 *
 * The least any server can do per message: one process, one level-triggered
 * epoll loop, nonblocking sockets with TCP_NODELAY, lines split on LF (a CR
 * before it is stripped), a hash table of users by lower-cased name, and
 * every line sent straight to the socket with send(); only what the socket
 * does not take goes to a per-connection output buffer, watched with EPOLLOUT
 * until it drains. No telnet filter, no flow control, no log. Whatever a
 * server spends beyond this is its protocol features and its runtime: this is
 * the floor the kernel sets (a recv per read, a send per line).
 *
 * It speaks the subset of the chat protocol the load generator uses (JOIN,
 * MESG, BCST, LIST, QUIT) with the reply lines of bench/textbook.py, so the
 * same generator drives it. Message text is relayed as the bytes it came in.
 *
 * Memory is bounded: a connection whose line exceeds MAX_LINE bytes, or
 * whose unsent output would exceed MAX_OUTPUT bytes, is closed.
 *
 *     gcc -O2 -Wall -Wextra -o crelay bench/crelay.c
 *     crelay PORT [MAX_USERS]
 *
 * PORT 0 lets the kernel choose; the port is printed either way, as
 * "crelay listening on 127.0.0.1:PORT". Listens on 127.0.0.1 only. SIGTERM
 * ends it with status 0. bench/servers.py compiles it on demand.
 */

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_LINE 4096              /* bytes in one line, line end excluded */
#define MAX_OUTPUT (1 << 20)       /* unsent bytes held for one connection */
#define READ_SIZE 65536            /* bytes asked of one recv */
#define MAX_NAME 32
#define MAX_EVENTS 1024
#define REPLY_SIZE (MAX_LINE + 128) /* any one reply line, text included */

static const char GREETING[] =
    "INFO Welcome to chat. Register with: JOIN <username>\r\n"
    "INFO Usernames are 1 to 32 ASCII letters and digits. Type HELP for the commands.\r\n";

struct conn {
    int fd;
    unsigned char dead;      /* to be closed at the end of this loop turn */
    unsigned char quitting;  /* QUIT seen: close once the output drains */
    unsigned char watching;  /* EPOLLOUT is on */
    unsigned char name_len;  /* 0: not registered */
    char name[MAX_NAME + 1]; /* as given to JOIN */
    char key[MAX_NAME + 1];  /* lower-cased: the hash table's key */
    uint32_t hash;
    struct conn *chain;            /* next in the hash bucket */
    struct conn *prev, *next;      /* registered users, in joining order */
    struct conn *next_dead;
    char *in;                      /* a partial line, MAX_LINE bytes once allocated */
    size_t in_len;
    char *out;                     /* unsent output: out[out_off .. out_len) */
    size_t out_off, out_len, out_cap;
};

static int epfd;
static struct conn **buckets;
static uint32_t bucket_mask;
static struct conn *first_user, *last_user;
static long users, capacity;
static struct conn *dead_list;
static char read_buffer[MAX_LINE + READ_SIZE];
static char *scratch; /* LIST replies, grown as needed */
static size_t scratch_cap;
static volatile sig_atomic_t stopping;

static void on_sigterm(int sig)
{
    (void)sig;
    stopping = 1;
}

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static void *grow(void *block, size_t size)
{
    void *bigger = realloc(block, size);
    if (bigger == NULL)
        die("realloc");
    return bigger;
}

/* Marked now, closed after the loop turn: epoll events already fetched may
 * still point at it, and its fd must not be reused until they are handled. */
static void kill_conn(struct conn *c)
{
    if (c->dead)
        return;
    c->dead = 1;
    c->next_dead = dead_list;
    dead_list = c;
}

static void watch(struct conn *c, int output)
{
    struct epoll_event ev = {.events = EPOLLIN | (output ? EPOLLOUT : 0), .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0)
        kill_conn(c);
    else
        c->watching = (unsigned char)output;
}

/* Send straight to the socket; buffer only what it does not take. */
static void send_bytes(struct conn *c, const char *data, size_t len)
{
    if (c->dead)
        return;
    if (c->out_len == 0) {
        ssize_t sent;
        do
            sent = send(c->fd, data, len, MSG_NOSIGNAL);
        while (sent < 0 && errno == EINTR);
        if (sent < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                kill_conn(c);
                return;
            }
            sent = 0;
        }
        if ((size_t)sent == len)
            return;
        data += sent;
        len -= (size_t)sent;
    }
    if (c->out_len - c->out_off + len > MAX_OUTPUT) {
        kill_conn(c);
        return;
    }
    if (c->out_len + len > c->out_cap) {
        if (c->out_off > 0) {
            /* Move the unsent part to the front before growing. */
            memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
            c->out_len -= c->out_off;
            c->out_off = 0;
        }
        if (c->out_len + len > c->out_cap) {
            size_t cap = c->out_cap ? c->out_cap : 4096;
            while (cap < c->out_len + len)
                cap *= 2;
            c->out = grow(c->out, cap);
            c->out_cap = cap;
        }
    }
    memcpy(c->out + c->out_len, data, len);
    c->out_len += len;
    if (!c->watching)
        watch(c, 1);
}

static void send_str(struct conn *c, const char *text)
{
    send_bytes(c, text, strlen(text));
}

static void flush_output(struct conn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t sent = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (sent < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                kill_conn(c);
            return;
        }
        c->out_off += (size_t)sent;
    }
    /* Drained: give the memory back, an idle connection holds no buffer. */
    free(c->out);
    c->out = NULL;
    c->out_off = c->out_len = c->out_cap = 0;
    watch(c, 0);
    if (c->quitting)
        kill_conn(c);
}

/* Appends to a reply line being built; the caller sizes it (REPLY_SIZE). */
static char *put(char *at, const char *data, size_t len)
{
    memcpy(at, data, len);
    return at + len;
}

#define PUT_LITERAL(at, literal) put((at), (literal), sizeof(literal) - 1)

static uint32_t hash_key(const char *key, size_t len)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)key[i]) * 16777619u;
    return h;
}

/* Lower-cases name into key (MAX_NAME + 1 bytes); 0 if it is too long to be a user. */
static size_t lower_key(char *key, const char *name, size_t len)
{
    if (len > MAX_NAME)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char ch = name[i];
        key[i] = (ch >= 'A' && ch <= 'Z') ? (char)(ch + 32) : ch;
    }
    key[len] = '\0';
    return len;
}

static struct conn *find_user(const char *name, size_t len)
{
    char key[MAX_NAME + 1];
    if (len == 0 || lower_key(key, name, len) == 0)
        return NULL;
    uint32_t h = hash_key(key, len);
    for (struct conn *u = buckets[h & bucket_mask]; u != NULL; u = u->chain)
        if (u->hash == h && memcmp(u->key, key, len + 1) == 0)
            return u;
    return NULL;
}

static void add_user(struct conn *c, const char *name, size_t len)
{
    memcpy(c->name, name, len);
    c->name[len] = '\0';
    c->name_len = (unsigned char)len;
    lower_key(c->key, name, len);
    c->hash = hash_key(c->key, len);
    struct conn **bucket = &buckets[c->hash & bucket_mask];
    c->chain = *bucket;
    *bucket = c;
    c->prev = last_user;
    c->next = NULL;
    if (last_user != NULL)
        last_user->next = c;
    else
        first_user = c;
    last_user = c;
    users++;
}

static void remove_user(struct conn *c)
{
    struct conn **link = &buckets[c->hash & bucket_mask];
    while (*link != c)
        link = &(*link)->chain;
    *link = c->chain;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        first_user = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    else
        last_user = c->prev;
    users--;
}

static int is_space(char ch)
{
    return ch == ' ' || (ch >= '\t' && ch <= '\r');
}

static int is_alnum(char ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
}

/* Strips ASCII whitespace from both ends of [*start, *start + *len). */
static void strip(const char **start, size_t *len)
{
    while (*len > 0 && is_space((*start)[0])) {
        (*start)++;
        (*len)--;
    }
    while (*len > 0 && is_space((*start)[*len - 1]))
        (*len)--;
}

static void join(struct conn *c, const char *name, size_t len)
{
    char reply[REPLY_SIZE];
    int valid = len >= 1 && len <= MAX_NAME;
    for (size_t i = 0; valid && i < len; i++)
        valid = is_alnum(name[i]);
    if (c->name_len) {
        snprintf(reply, sizeof reply, "ERR Already Registered: you are %s\r\n", c->name);
        send_str(c, reply);
    } else if (!valid) {
        send_str(c, "ERR Invalid Username: 1 to 32 ASCII letters and digits\r\n");
    } else if (users >= capacity) {
        send_str(c, "ERR Too Many Users: try again later\r\n");
    } else if (find_user(name, len) != NULL) {
        snprintf(reply, sizeof reply, "ERR Username Taken: %.*s is already registered\r\n",
                 (int)len, name);
        send_str(c, reply);
    } else {
        add_user(c, name, len);
        snprintf(reply, sizeof reply, "OK JOIN %s %ld/%ld\r\n", c->name, users, capacity);
        send_str(c, reply);
    }
}

static void message(struct conn *c, const char *rest, size_t len)
{
    char reply[REPLY_SIZE];
    const char *space = memchr(rest, ' ', len);
    if (space == NULL || space + 1 == rest + len) {
        send_str(c, "ERR Usage: MESG <username> <text>\r\n");
        return;
    }
    size_t to_len = (size_t)(space - rest);
    const char *text = space + 1;
    size_t text_len = len - to_len - 1;
    struct conn *to = find_user(rest, to_len);
    char *at = reply;
    if (to == NULL) {
        at = PUT_LITERAL(at, "ERR Unknown Recipient: nobody named ");
        at = put(at, rest, to_len);
        at = PUT_LITERAL(at, " is registered\r\n");
        send_bytes(c, reply, (size_t)(at - reply));
        return;
    }
    at = PUT_LITERAL(at, "MESG ");
    at = put(at, c->name, c->name_len);
    at = PUT_LITERAL(at, ": ");
    at = put(at, text, text_len);
    at = PUT_LITERAL(at, "\r\n");
    send_bytes(to, reply, (size_t)(at - reply));
    at = PUT_LITERAL(reply, "OK MESG ");
    at = put(at, to->name, to->name_len);
    at = PUT_LITERAL(at, "\r\n");
    send_bytes(c, reply, (size_t)(at - reply));
}

static void broadcast(struct conn *c, const char *text, size_t len)
{
    char reply[REPLY_SIZE];
    if (len == 0) {
        send_str(c, "ERR Usage: BCST <text>\r\n");
        return;
    }
    char *at = PUT_LITERAL(reply, "BCST ");
    at = put(at, c->name, c->name_len);
    at = PUT_LITERAL(at, ": ");
    at = put(at, text, len);
    at = PUT_LITERAL(at, "\r\n");
    long count = 0;
    for (struct conn *u = first_user; u != NULL; u = u->next)
        if (u != c) {
            send_bytes(u, reply, (size_t)(at - reply));
            count++;
        }
    snprintf(reply, sizeof reply, "OK BCST %ld\r\n", count);
    send_str(c, reply);
}

static void list(struct conn *c)
{
    size_t need = (size_t)users * (MAX_NAME + 7) + 64;
    if (need > scratch_cap) {
        scratch = grow(scratch, need);
        scratch_cap = need;
    }
    char *at = scratch;
    for (struct conn *u = first_user; u != NULL; u = u->next) {
        at = PUT_LITERAL(at, "USER ");
        at = put(at, u->name, u->name_len);
        at = PUT_LITERAL(at, "\r\n");
    }
    at += sprintf(at, "OK LIST %ld\r\n", users);
    send_bytes(c, scratch, (size_t)(at - scratch));
}

static int verb_is(const char *verb, size_t len, const char *upper)
{
    size_t i = 0;
    for (; i < len && upper[i] != '\0'; i++)
        if ((verb[i] & ~0x20) != upper[i])
            return 0;
    return i == len && upper[i] == '\0';
}

/* One line, without its line end: the same decisions as bench/textbook.py. */
static void line_received(struct conn *c, const char *line, size_t len)
{
    strip(&line, &len);
    if (len == 0)
        return;
    const char *space = memchr(line, ' ', len);
    size_t verb_len = space ? (size_t)(space - line) : len;
    const char *rest = space ? space + 1 : line + len;
    size_t rest_len = len - (size_t)(rest - line);
    strip(&rest, &rest_len);
    if (verb_is(line, verb_len, "MESG") && c->name_len) {
        message(c, rest, rest_len);
    } else if (verb_is(line, verb_len, "BCST") && c->name_len) {
        broadcast(c, rest, rest_len);
    } else if (verb_is(line, verb_len, "QUIT")) {
        send_str(c, "OK QUIT Bye\r\n");
        c->quitting = 1;
        if (c->out_len == 0)
            kill_conn(c);
    } else if (verb_is(line, verb_len, "JOIN")) {
        join(c, rest, rest_len);
    } else if (!c->name_len) {
        send_str(c, "ERR Unregistered User: register first with JOIN <username>\r\n");
    } else if (verb_is(line, verb_len, "LIST")) {
        list(c);
    } else {
        char reply[REPLY_SIZE];
        char *at = PUT_LITERAL(reply, "ERR Unknown Message: ");
        for (size_t i = 0; i < verb_len; i++) {
            char ch = line[i];
            *at++ = (ch >= 'a' && ch <= 'z') ? (char)(ch - 32) : ch;
        }
        at = PUT_LITERAL(at, " is not a command\r\n");
        send_bytes(c, reply, (size_t)(at - reply));
    }
}

static void read_input(struct conn *c)
{
    /* A partial line from the last read goes first, then what arrives. */
    size_t have = c->in_len;
    if (have)
        memcpy(read_buffer, c->in, have);
    ssize_t got;
    do
        got = recv(c->fd, read_buffer + have, READ_SIZE, 0);
    while (got < 0 && errno == EINTR);
    if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return;
    if (got <= 0) {
        kill_conn(c);
        return;
    }
    c->in_len = 0;
    const char *start = read_buffer, *end = read_buffer + have + got;
    while (!c->dead && !c->quitting) {
        const char *lf = memchr(start, '\n', (size_t)(end - start));
        if (lf == NULL)
            break;
        if ((size_t)(lf - start) > MAX_LINE) {
            kill_conn(c);
            return;
        }
        line_received(c, start, (size_t)(lf - start));
        start = lf + 1;
    }
    if (c->dead || c->quitting || start == end)
        return;
    if ((size_t)(end - start) > MAX_LINE) {
        kill_conn(c);
        return;
    }
    if (c->in == NULL)
        c->in = grow(NULL, MAX_LINE);
    c->in_len = (size_t)(end - start);
    memcpy(c->in, start, c->in_len);
}

static void accept_all(int listener)
{
    for (;;) {
        int fd = accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                perror("accept4");
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct conn *c = calloc(1, sizeof *c);
        if (c == NULL)
            die("calloc");
        c->fd = fd;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
            perror("epoll_ctl");
            close(fd);
            free(c);
            continue;
        }
        send_bytes(c, GREETING, sizeof GREETING - 1);
    }
}

static void close_dead(void)
{
    while (dead_list != NULL) {
        struct conn *c = dead_list;
        dead_list = c->next_dead;
        if (c->name_len)
            remove_user(c);
        close(c->fd); /* also takes it out of the epoll set */
        free(c->in);
        free(c->out);
        free(c);
    }
}

static int listen_on(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die("socket");
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0)
        die("bind");
    if (listen(fd, SOMAXCONN) < 0)
        die("listen");
    socklen_t size = sizeof addr;
    if (getsockname(fd, (struct sockaddr *)&addr, &size) < 0)
        die("getsockname");
    printf("crelay listening on 127.0.0.1:%d\n", ntohs(addr.sin_port));
    fflush(stdout);
    return fd;
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: crelay PORT [MAX_USERS]\n");
        return 2;
    }
    int port = atoi(argv[1]);
    capacity = argc == 3 ? atol(argv[2]) : 100000;
    if (port < 0 || port > 65535 || capacity < 1) {
        fprintf(stderr, "crelay: bad PORT or MAX_USERS\n");
        return 2;
    }
    /* As many descriptors as allowed: tens of thousands of clients. */
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) == 0) {
        limit.rlim_cur = limit.rlim_max;
        setrlimit(RLIMIT_NOFILE, &limit);
    }
    uint32_t size = 1024;
    while ((long)size < capacity && size < (1u << 22))
        size *= 2;
    buckets = calloc(size, sizeof *buckets);
    if (buckets == NULL)
        die("calloc");
    bucket_mask = size - 1;

    signal(SIGPIPE, SIG_IGN);
    struct sigaction term = {.sa_handler = on_sigterm}; /* no SA_RESTART: epoll_wait returns */
    sigaction(SIGTERM, &term, NULL);

    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0)
        die("epoll_create1");
    int listener = listen_on(port);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, listener, &ev) < 0)
        die("epoll_ctl");

    static struct epoll_event events[MAX_EVENTS];
    while (!stopping) {
        int ready = epoll_wait(epfd, events, MAX_EVENTS, -1);
        if (ready < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait");
        }
        for (int i = 0; i < ready; i++) {
            struct conn *c = events[i].data.ptr;
            if (c == NULL) {
                accept_all(listener);
                continue;
            }
            if (!c->dead && (events[i].events & EPOLLOUT))
                flush_output(c);
            if (!c->dead && (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                read_input(c);
        }
        close_dead();
    }
    return 0;
}
