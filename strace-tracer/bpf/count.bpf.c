// SPDX-License-Identifier: GPL-2.0
/* tau_strace's eBPF engine: counts the system calls of the threads listed in
 * `threads`, like `strace -f -c`, and follows their process tree.
 *
 * The per-syscall path of a thread that is not traced is one hash lookup
 * (the floor); of a traced one, the lookup, a clock read and a few adds;
 * the task's fields it needs are read through its BTF-typed pointer
 * (bpf_get_current_task_btf), plain loads rather than helper calls.
 * Totals live in one global struct (`.bss`) that user space reads in one go:
 * slots 0..1023 are x86-64 numbers, 1024..2047 x32 numbers (without their
 * marker bit), 2048..3071 i386 numbers; any other number goes to `rare`.
 * Built by strace-tracer/build.rs with clang; loaded by src/bpf.rs. */
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

#define ABI_SLOTS 1024
#define SLOTS (3 * ABI_SLOTS)
#define X32_BIT 0x40000000L
#define TS_COMPAT 0x0002
#define MAX_ERRNO 4095
#define MAX_MESSAGES 1024

/* flags[slot]: how the bytes of a call are known, and whether it counts. */
#define BYTES_RETURN 1
#define BYTES_MESSAGES 2
#define COUNTED 4

/* What the kernel's BTF says of these two; only the fields used. */
struct thread_info {
	__u32 status;
} __attribute__((preserve_access_index));

struct sigpending {
	struct {
		void *next, *prev;
	} list;
	struct {
		unsigned long sig[1];
	} signal;
} __attribute__((preserve_access_index));

struct task_struct {
	struct thread_info thread_info;
	struct sigpending pending;
	int pid;
} __attribute__((preserve_access_index));

#define SIGKILL_BIT (1UL << (9 - 1))

/* x86-64 `struct pt_regs`: where the second argument of a call lies. */
#define REGS_CX 88
#define REGS_SI 104

/* One traced thread: the call in progress, if any. */
struct thread {
	__u64 start;  /* ktime at entry; 0: no call being counted */
	__u64 msgvec; /* sendmmsg/recvmmsg: the message array */
	__u32 slot;   /* SLOTS: a rare number, in `nr` */
	__u32 abi;    /* 0 x86-64, 1 x32, 2 i386 */
	__u64 nr;
};

struct total {
	__u64 hits;
	__u64 errors;
	__u64 bytes;
	__u64 ns;
};

struct rare_key {
	__u32 abi;
	__u32 pad;
	__u64 nr;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct thread);
} threads SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, struct rare_key);
	__type(value, struct total);
} rare SEC(".maps");

/* Set by user space before loading. */
const volatile __u8 flags[SLOTS] = {};
/* Whether numbers outside the tables are counted (not with --only). */
const volatile __u8 rare_counted = 1;

/* Everything user space reads, in one struct so that its layout is fixed. */
struct state {
	struct total totals[SLOTS];
	/* Threads that could not be followed (`threads` full). */
	__u64 lost_threads;
	/* Calls that could not be counted (`rare` full). */
	__u64 lost_calls;
};

struct state state = {};

static __always_inline __u32 current_tid(void)
{
	return (__u32)bpf_get_current_pid_tgid();
}

SEC("raw_tracepoint/sys_enter")
int sys_enter(struct bpf_raw_tracepoint_args *ctx)
{
	__u32 tid = current_tid();
	struct thread *t = bpf_map_lookup_elem(&threads, &tid);
	if (!t)
		return 0;
	long id = (long)ctx->args[1];
	struct task_struct *task = bpf_get_current_task_btf();
	__u32 status = task->thread_info.status;
	__u32 abi = 0;
	__u64 nr = (__u64)id;
	if (status & TS_COMPAT) {
		abi = 2;
	} else if (id >= 0 && (id & X32_BIT)) {
		abi = 1;
		nr = (__u64)(id & ~X32_BIT);
	}
	__u32 slot = SLOTS;
	__u8 f = rare_counted ? COUNTED : 0;
	if (nr < ABI_SLOTS) {
		slot = abi * ABI_SLOTS + (__u32)nr;
		if (slot >= SLOTS)
			return 0;
		f = flags[slot];
	}
	if (!(f & COUNTED)) {
		t->start = 0;
		return 0;
	}
	t->slot = slot;
	t->abi = abi;
	t->nr = nr;
	t->msgvec = 0;
	if (f & BYTES_MESSAGES) {
		struct pt_regs *regs = (struct pt_regs *)ctx->args[0];
		__u64 arg1 = 0;
		bpf_probe_read_kernel(&arg1, sizeof(arg1), (char *)regs + (abi == 2 ? REGS_CX : REGS_SI));
		t->msgvec = abi == 0 ? arg1 : (__u32)arg1;
	}
	t->start = bpf_ktime_get_ns();
	return 0;
}

static __always_inline struct total *rare_total(struct thread *t)
{
	struct rare_key key = {.abi = t->abi, .nr = t->nr};
	struct total *c = bpf_map_lookup_elem(&rare, &key);
	if (c)
		return c;
	struct total zero = {};
	bpf_map_update_elem(&rare, &key, &zero, BPF_NOEXIST);
	return bpf_map_lookup_elem(&rare, &key);
}

static __always_inline __u64 message_bytes(struct thread *t, __u64 count)
{
	__u64 size = t->abi == 0 ? 64 : 32;
	__u64 offset = t->abi == 0 ? 56 : 28;
	__u64 bytes = 0;
	for (__u32 i = 0; i < MAX_MESSAGES; i++) {
		if (i >= count)
			break;
		__u32 len = 0;
		bpf_probe_read_user(&len, sizeof(len), (void *)(t->msgvec + i * size + offset));
		bytes += len;
	}
	return bytes;
}

SEC("raw_tracepoint/sys_exit")
int sys_exit(struct bpf_raw_tracepoint_args *ctx)
{
	__u32 tid = current_tid();
	struct thread *t = bpf_map_lookup_elem(&threads, &tid);
	if (!t || !t->start)
		return 0;
	__u64 ns = bpf_ktime_get_ns() - t->start;
	t->start = 0;
	/* A thread being killed (SIGKILL, exit_group or exec by another
	 * thread) leaves its call unfinished: ptrace reports no exit for it,
	 * and strace does not count it. */
	struct task_struct *task = bpf_get_current_task_btf();
	if (task->pending.signal.sig[0] & SIGKILL_BIT)
		return 0;
	long ret = (long)ctx->args[1];
	__u32 slot = t->slot;
	struct total *c;
	__u8 f = 0;
	if (slot < SLOTS) {
		c = &state.totals[slot];
		f = flags[slot];
	} else {
		c = rare_total(t);
		if (!c) {
			__sync_fetch_and_add(&state.lost_calls, 1);
			return 0;
		}
	}
	__sync_fetch_and_add(&c->ns, ns);
	if (ret < 0 && ret >= -MAX_ERRNO) {
		__sync_fetch_and_add(&c->errors, 1);
	} else if (ret > 0 && (f & BYTES_RETURN)) {
		__sync_fetch_and_add(&c->bytes, (__u64)ret);
	} else if (ret > 0 && (f & BYTES_MESSAGES) && t->msgvec) {
		__sync_fetch_and_add(&c->bytes, message_bytes(t, (__u64)ret));
	}
	/* Hits last: a reader seeing a hit also sees its time and bytes. */
	__sync_fetch_and_add(&c->hits, 1);
	return 0;
}

/* A thread or process created by a traced thread is traced. Called before
 * the child first runs. */
SEC("raw_tracepoint/sched_process_fork")
int on_fork(struct bpf_raw_tracepoint_args *ctx)
{
	__u32 parent = current_tid();
	if (!bpf_map_lookup_elem(&threads, &parent))
		return 0;
	struct task_struct *child = (struct task_struct *)ctx->args[1];
	__u32 pid = (__u32)BPF_CORE_READ(child, pid);
	struct thread fresh = {};
	if (bpf_map_update_elem(&threads, &pid, &fresh, BPF_ANY))
		__sync_fetch_and_add(&state.lost_threads, 1);
	return 0;
}

/* A thread other than the leader that execs takes the leader's id: its
 * call in progress (the execve) moves with it. */
SEC("raw_tracepoint/sched_process_exec")
int on_exec(struct bpf_raw_tracepoint_args *ctx)
{
	__u32 tid = current_tid();
	__u32 old = (__u32)ctx->args[1];
	if (old == tid)
		return 0;
	struct thread *t = bpf_map_lookup_elem(&threads, &old);
	if (!t)
		return 0;
	struct thread moved = *t;
	bpf_map_update_elem(&threads, &tid, &moved, BPF_ANY);
	bpf_map_delete_elem(&threads, &old);
	return 0;
}

SEC("raw_tracepoint/sched_process_exit")
int on_exit(struct bpf_raw_tracepoint_args *ctx)
{
	__u32 tid = current_tid();
	bpf_map_delete_elem(&threads, &tid);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
