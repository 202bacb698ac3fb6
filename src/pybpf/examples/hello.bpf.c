/* The seed's "Hello World" for a network interface, exactly as the book writes it.
 *
 * Tests: a .bss global (counter, zero-initialised) read and incremented by the
 * program, bpf_printk (bpf_trace_printk with a format string in .rodata), XDP_PASS.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

int counter = 0;

SEC("xdp")
int hello(struct xdp_md *ctx) {
    bpf_printk("Hello World %d", counter);
    counter++;
    return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
