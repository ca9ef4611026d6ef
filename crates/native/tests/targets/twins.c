/* Two threads that each count as fast as they can, for strobe-native's test of stopping
 * threads together: prints `READY <tid1> <tid2> <address1> <address2>` once both count, the
 * addresses of their counters (each on its own cache line). */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

static volatile unsigned long counters[2][8];
static volatile long tids[2];

static void *count(void *arg) {
    long i = (long)arg;
    tids[i] = (long)syscall(SYS_gettid);
    for (;;) counters[i][0]++;
    return NULL;
}

int main(void) {
    pthread_t t[2];
    for (long i = 0; i < 2; i++) pthread_create(&t[i], NULL, count, (void *)i);
    while (tids[0] == 0 || tids[1] == 0 || counters[0][0] == 0 || counters[1][0] == 0)
        sched_yield();
    printf("READY %ld %ld %lu %lu\n", tids[0], tids[1], (unsigned long)&counters[0][0],
           (unsigned long)&counters[1][0]);
    fflush(stdout);
    for (;;) pause();
}
