/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Map key/value layouts shared by the edge-sfu BPF programs (guard.c, fanout.c, rewrite.c).
 *
 * Every struct here is mirrored in Rust (xdp-forwarder/src/maps.rs) with #[repr(C)]; a unit test
 * there checks sizes and field offsets against the values below. Padding is always explicit so
 * that both sides agree byte for byte and no uninitialised bytes end up in a hash key.
 *
 * Byte order: addresses, ports and SSRCs are stored in NETWORK byte order (exactly as on the
 * wire), so the programs compare and copy them without conversion. Counters, indices, flags and
 * configuration values are host byte order.
 *
 * Addresses: 16 bytes; an IPv4 address takes the first 4 bytes and the other 12 are zero.
 */
#ifndef EDGE_SFU_MAPS_H
#define EDGE_SFU_MAPS_H

#include <linux/types.h>

/* Outputs per fan-out key (the unrolled loop in fanout.c has exactly this many iterations). */
#define MAX_OUTPUTS 16
/* Slots in the per-output counter arrays; the loader hands out slot numbers. */
#define MAX_OUTPUT_COUNTERS 4096
/* Entries in the admitted-flow table, the STUN token buckets and the port sets. */
#define MAX_FLOWS 65536
#define MAX_STUN_SOURCES 65536
#define MAX_PORTS 1024
#define MAX_FANOUT_KEYS 4096

#define FAMILY_V4 4
#define FAMILY_V6 6

/* fanout_output.pt: keep the payload type of the incoming packet. */
#define PT_KEEP 0xff

/* fanout_value.flags: after the copies, restore the original headers and hand the packet to the
 * local stack (TC_ACT_OK) instead of dropping it, so the SFU's own socket still receives it. */
#define FANOUT_F_PASS_ORIGINAL 1u

/* ---- guard.c ------------------------------------------------------------------------------ */

/* guard_ports: media ports the guard protects. Key: __u16 port (host order). Value: __u8 (1). */

/* guard_flows: admitted 5-tuples (UDP), as seen on arrival (src = peer, dst = SFU). */
struct flow_key {
	__u8 src_addr[16];
	__u8 dst_addr[16];
	__be16 src_port;
	__be16 dst_port;
	__u8 family; /* FAMILY_V4 or FAMILY_V6 */
	__u8 pad[3];
};

/* guard_stun_buckets (LRU): key = source address, value = token bucket. */
struct src_key {
	__u8 addr[16];
	__u8 family;
	__u8 pad[3];
};

struct stun_bucket {
	__u64 last_ns;      /* bpf_ktime_get_ns() of the last refill */
	__u64 tokens_milli; /* tokens * 1000 */
};

/* guard_config: ARRAY with one entry. */
struct guard_config {
	__u32 stun_rate_per_sec; /* refill rate of each source's bucket */
	__u32 stun_burst;        /* bucket size; a new source starts full */
};

/* guard_stats: PERCPU_ARRAY indexed by enum guard_stat, value struct counter. */
enum guard_stat {
	GUARD_PASS_ADMITTED = 0,      /* admitted 5-tuple, passed */
	GUARD_PASS_STUN = 1,          /* STUN binding request within its source's rate, passed */
	GUARD_DROP_UNKNOWN_SOURCE = 2,/* to a media port from a 5-tuple never admitted */
	GUARD_DROP_STUN_RATE_LIMITED = 3,
	GUARD_DROP_MALFORMED = 4,     /* bad UDP length, or STUN header inconsistent with datagram */
	GUARD_PASS_UNSUPPORTED = 5,   /* to a media port with IPv4 options / as a first fragment:
				       * passed untouched, counted so a bypass attempt shows */
	GUARD_STAT_MAX = 8,
};

struct counter {
	__u64 packets;
	__u64 bytes;
};

/* ---- fanout.c and rewrite.c ---------------------------------------------------------------- */

/* fwd_ports: UDP ports with fan-out/rewrite keys. Key: __u16 port (host order). Value: __u8. */

/* fanout_map / rewrite_map key: the packet's UDP destination port and RTP SSRC. */
struct fanout_key {
	__be16 dst_port;
	__u8 pad[2];
	__be32 ssrc;
};

/* One output: how one copy leaves. */
struct fanout_output {
	__u8 dst_addr[16]; /* new IP destination */
	__u8 src_addr[16]; /* new IP source (an address of the SFU) */
	__u8 dst_mac[6];   /* all zero: resolve next hop with bpf_fib_lookup per packet */
	__u8 src_mac[6];   /* used with dst_mac */
	__u32 ifindex;     /* egress interface; 0 only with fib lookup (then the fib decides) */
	__be32 ssrc;       /* new RTP SSRC */
	__be16 dst_port;   /* new UDP destination port */
	__be16 src_port;   /* new UDP source port */
	__u32 counter_idx; /* slot in output_counters, < MAX_OUTPUT_COUNTERS */
	__u8 pt;           /* new RTP payload type (0..127), or PT_KEEP */
	__u8 family;       /* FAMILY_V4 or FAMILY_V6; must match the packet's family */
	__u8 pad[2];
};

/* fanout_map value. */
struct fanout_value {
	__u32 count; /* outputs in use, 0..MAX_OUTPUTS */
	__u32 flags; /* FANOUT_F_* */
	struct fanout_output outputs[MAX_OUTPUTS];
};

/* output_counters: PERCPU_ARRAY indexed by fanout_output.counter_idx. */
struct output_counter {
	__u64 packets;    /* copies handed to the egress interface */
	__u64 bytes;      /* their bytes, L2 header included */
	__u64 fib_errors; /* no route / no neighbour / forwarding disabled: copy not sent */
	__u64 tx_errors;  /* family mismatch, rewrite or redirect failure: copy not sent */
};

/* fanout_stats / rewrite_stats: PERCPU_ARRAY indexed by enum fwd_stat, value struct counter. */
enum fwd_stat {
	FWD_MATCHED = 0,          /* RTP packet with a key: rewritten/copied */
	FWD_PASS_NOT_RTP = 1,     /* to a forwarding port but short, not RTP v2, or RTCP: untouched */
	FWD_PASS_NO_KEY = 2,      /* RTP to a forwarding port, SSRC without a key: untouched */
	FWD_PASS_UNSUPPORTED = 3, /* IPv4 options, IPv4 fragments, GSO: untouched */
	FWD_PASS_MALFORMED = 4,   /* UDP/IP lengths inconsistent: untouched */
	FWD_PASS_ORIGINAL = 5,    /* original restored and passed up (FANOUT_F_PASS_ORIGINAL) */
	FWD_CONSUMED = 6,         /* original dropped after its copies */
	FWD_STAT_MAX = 8,
};

#endif /* EDGE_SFU_MAPS_H */
