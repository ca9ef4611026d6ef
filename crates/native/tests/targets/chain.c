/* A known native call chain for strobe-native's tests: main -> a -> b -> (b_in, inlined) -> c,
 * where c spins, sleeps in nanosleep, blocks in read, or calls realigned_spin, as the first
 * argument says. With a second argument `thread`, the chain runs on a second thread and main
 * waits for it.
 *
 * The markers (@name) let the tests find the line each frame must report; the empty asm after
 * each call keeps the compiler from turning the calls into jumps (tail calls) at -O2. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static volatile unsigned long sink;
static int mode; /* 0 spin, 1 sleep, 2 read, 3 realign */

/* Spins counting in sink with its stack realigned to 64 bytes and its frame kept in rbx, as
 * glibc's lazy-binding resolver (_dl_runtime_resolve_xsavec) does: its CFI computes the CFA
 * from rbx, which an unwinder that follows only rsp and rbp cannot evaluate. */
void realigned_spin(void);
__asm__(".text\n"
        ".globl realigned_spin\n"
        ".type realigned_spin, @function\n"
        "realigned_spin:\n"
        ".cfi_startproc\n"
        "push %rbx\n"
        ".cfi_def_cfa_offset 16\n"
        ".cfi_offset %rbx, -16\n"
        "mov %rsp, %rbx\n"
        ".cfi_def_cfa_register %rbx\n"
        "and $-64, %rsp\n"
        "sub $64, %rsp\n"
        "1: incq sink(%rip)\n"
        "jmp 1b\n"
        ".cfi_endproc\n"
        ".size realigned_spin, .-realigned_spin\n");

static void ready(void) {
    printf("READY %ld\n", (long)syscall(SYS_gettid));
    fflush(stdout);
}

static void __attribute__((noinline)) c(void) {
    ready();
    if (mode == 0) {
        for (;;) sink++; /* @spin */
    } else if (mode == 3) {
        realigned_spin(); /* @c_realign */
    } else if (mode == 1) {
        struct timespec ts = {100000, 0};
        for (;;) nanosleep(&ts, NULL); /* @c_sleep */
    } else {
        char ch = 0;
        while (read(0, &ch, 1) == 1 && ch != 'x') /* @c_read */
            sink++;
    }
    __asm__ volatile("" ::: "memory");
}

static inline __attribute__((always_inline)) void b_in(void) {
    c(); /* @b_in */
    __asm__ volatile("" ::: "memory");
}

static void __attribute__((noinline)) b(void) {
    b_in(); /* @b */
    __asm__ volatile("" ::: "memory");
}

static void __attribute__((noinline)) a(void) {
    b(); /* @a */
    __asm__ volatile("" ::: "memory");
}

static void *start(void *arg) {
    (void)arg;
    a(); /* @start */
    __asm__ volatile("" ::: "memory");
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: chain spin|sleep|read|realign [thread]\n");
        return 2;
    }
    mode = strcmp(argv[1], "spin") == 0    ? 0
           : strcmp(argv[1], "sleep") == 0 ? 1
           : strcmp(argv[1], "read") == 0  ? 2
                                           : 3;
    if (argc > 2 && strcmp(argv[2], "thread") == 0) {
        pthread_t t;
        pthread_create(&t, NULL, start, NULL);
        pthread_join(t, NULL);
        printf("JOINED\n");
        fflush(stdout);
        for (;;) pause();
    }
    a(); /* @main */
    __asm__ volatile("" ::: "memory");
    return 0;
}
