// SPDX-License-Identifier: GPL-2.0
/* The benchmark's floor: programs on both syscall tracepoints that only ask
 * whether the calling thread is traced, as count.bpf.c does first, and do
 * nothing else. What it costs is what any such engine must cost. */
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, __u64);
} threads SEC(".maps");

static __always_inline int check(void)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	__u64 *seen = bpf_map_lookup_elem(&threads, &tid);
	if (seen)
		*seen += 1;
	return 0;
}

SEC("raw_tracepoint/sys_enter")
int sys_enter(struct bpf_raw_tracepoint_args *ctx)
{
	return check();
}

SEC("raw_tracepoint/sys_exit")
int sys_exit(struct bpf_raw_tracepoint_args *ctx)
{
	return check();
}

char LICENSE[] SEC("license") = "GPL";
