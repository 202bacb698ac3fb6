/* Shared by the verifier corpus's C programs: headers and the packet-parsing types. */
#ifndef VERIFIER_CORPUS_COMMON_H
#define VERIFIER_CORPUS_COMMON_H
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

/* The compiler may not drop a value it cannot see through. */
#define OPAQUE(x) ({ __typeof__(x) __v = (x); asm volatile("" : "+r"(__v)); __v; })

#endif
