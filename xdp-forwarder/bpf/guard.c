// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * guard: XDP on the SFU's media interface.
 *
 * For UDP datagrams to a media port (guard_ports):
 *   - from an admitted 5-tuple (guard_flows: ICE-validated peers, registered ingest sources): pass;
 *   - a well-formed STUN binding request: pass if its source IP's token bucket has a token
 *     (guard_stun_buckets, LRU), else drop (stun_rate_limited);
 *   - UDP length inconsistent with the IP length, or STUN header inconsistent: drop (malformed);
 *   - anything else: drop (unknown_source).
 * IPv4 and IPv6 alike: flows are keyed by 16-byte addresses and the family. IPv6 extension
 * headers (hop-by-hop, routing, destination options) are skipped, at most 4 of them in at most
 * 256 bytes, and the UDP datagram behind them meets the same checks; a longer chain is dropped
 * (malformed: no peer of an SFU sends one, and its port cannot be known). STUN buckets key an
 * IPv6 source by its /64, as the join limit does: one host holds a whole /64.
 * Everything else (non-IP, non-UDP, other ports, IPv4 options, IPv4 and IPv6 fragments) passes
 * untouched; IPv4 options and first fragments to a media port are counted (pass_unsupported),
 * since they pass without the 5-tuple check. Packets the guard passes are handed to the 1:1
 * rewrite program when the loader installed it in guard_next (tail call); otherwise XDP_PASS.
 */
#include "common.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_PORTS);
	__type(key, __u16);
	__type(value, __u8);
} guard_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_FLOWS);
	__type(key, struct flow_key);
	__type(value, __u8);
} guard_flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MAX_STUN_SOURCES);
	__type(key, struct src_key);
	__type(value, struct stun_bucket);
} guard_stun_buckets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct guard_config);
} guard_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, GUARD_STAT_MAX);
	__type(key, __u32);
	__type(value, struct counter);
} guard_stats SEC(".maps");

/* Slot 0: the program run after the guard passes a packet (rewrite), if any. */
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} guard_next SEC(".maps");

/* Refill cap: a bucket idle for longer than this is simply full. Keeps the math in 64 bits. */
#define MAX_REFILL_NS (60ULL * 1000000000ULL)

static __always_inline int pass_on(struct xdp_md *ctx)
{
	bpf_tail_call(ctx, &guard_next, 0);
	/* Empty slot (no rewrite program installed): the tail call falls through. */
	return XDP_PASS;
}

/* Token bucket per source address. Returns 1 when the request may pass. Buckets are shared by
 * all CPUs; concurrent updates for the same source may lose a refill or a take, which only makes
 * the limit slightly approximate. */
static __always_inline int stun_allowed(const struct src_key *src)
{
	__u32 zero = 0;
	struct guard_config *cfg = bpf_map_lookup_elem(&guard_config, &zero);
	struct stun_bucket *b;
	__u64 now = bpf_ktime_get_ns();
	__u64 burst_milli, elapsed, tokens;

	if (!cfg)
		return 0;
	burst_milli = (__u64)cfg->stun_burst * 1000;
	b = bpf_map_lookup_elem(&guard_stun_buckets, src);
	if (!b) {
		struct stun_bucket fresh = {};

		if (burst_milli < 1000)
			return 0;
		fresh.last_ns = now;
		fresh.tokens_milli = burst_milli - 1000;
		bpf_map_update_elem(&guard_stun_buckets, src, &fresh, BPF_ANY);
		return 1;
	}
	elapsed = now > b->last_ns ? now - b->last_ns : 0;
	if (elapsed > MAX_REFILL_NS)
		elapsed = MAX_REFILL_NS;
	/* tokens/s * ns / 1e9 tokens = ... / 1e6 milli-tokens */
	tokens = b->tokens_milli + elapsed * cfg->stun_rate_per_sec / 1000000;
	if (tokens > burst_milli)
		tokens = burst_milli;
	b->last_ns = now;
	if (tokens < 1000) {
		b->tokens_milli = tokens;
		return 0;
	}
	b->tokens_milli = tokens - 1000;
	return 1;
}

SEC("xdp")
int guard(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u64 bytes = data_end - data;
	struct flow_key key = {};
	struct src_key src = {};
	struct pkt p = {};
	enum parse_result r;
	struct udphdr *udp;
	__u8 *payload;
	__u16 port;

	r = parse_udp(data, data_end, &p);
	if (p.ext_unparsed) {
		count(&guard_stats, GUARD_DROP_MALFORMED, bytes);
		return XDP_DROP;
	}
	if (r == PARSE_NOT_UDP || !p.has_port)
		return pass_on(ctx);
	port = p.dst_port;
	if (!bpf_map_lookup_elem(&guard_ports, &port))
		return pass_on(ctx);
	if (r == PARSE_UNSUPPORTED && !p.ipv6_ext) {
		count(&guard_stats, GUARD_PASS_UNSUPPORTED, bytes);
		return pass_on(ctx);
	}
	if (r == PARSE_MALFORMED) {
		count(&guard_stats, GUARD_DROP_MALFORMED, bytes);
		return XDP_DROP;
	}

	/* Build the 5-tuple key. */
	if (p.family == FAMILY_V4) {
		struct iphdr *ip = data + sizeof(struct ethhdr);

		if ((void *)(ip + 1) > data_end)
			return XDP_PASS;
		__builtin_memcpy(key.src_addr, &ip->saddr, 4);
		__builtin_memcpy(key.dst_addr, &ip->daddr, 4);
	} else {
		struct ipv6hdr *ip6 = data + sizeof(struct ethhdr);

		if ((void *)(ip6 + 1) > data_end)
			return XDP_PASS;
		__builtin_memcpy(key.src_addr, &ip6->saddr, 16);
		__builtin_memcpy(key.dst_addr, &ip6->daddr, 16);
	}
	udp = data + (p.l4_off & L4_OFF_MASK);
	if ((void *)(udp + 1) > data_end)
		return XDP_PASS;
	key.src_port = udp->source;
	key.dst_port = udp->dest;
	key.family = p.family;

	if (bpf_map_lookup_elem(&guard_flows, &key)) {
		count(&guard_stats, GUARD_PASS_ADMITTED, bytes);
		return pass_on(ctx);
	}

	/* Not admitted: only a STUN binding request may pass (ICE connectivity checks from a peer
	 * that is not validated yet). */
	payload = (void *)(udp + 1);
	if ((void *)(payload + STUN_HEADER_LEN) > data_end || p.payload_len < STUN_HEADER_LEN) {
		count(&guard_stats, GUARD_DROP_UNKNOWN_SOURCE, bytes);
		return XDP_DROP;
	}
	/* Byte-wise: the cookie sits at a 2-byte aligned offset. */
	if ((payload[0] & 0xc0) == 0 && payload[4] == 0x21 && payload[5] == 0x12 &&
	    payload[6] == 0xa4 && payload[7] == 0x42) {
		__u32 msg_len = ((__u32)payload[2] << 8) | payload[3];

		if (msg_len % 4 != 0 || msg_len + STUN_HEADER_LEN != p.payload_len) {
			count(&guard_stats, GUARD_DROP_MALFORMED, bytes);
			return XDP_DROP;
		}
		if (payload[0] == 0x00 && payload[1] == 0x01) {
			/* IPv6: the /64 (the rest stays zero). */
			if (p.family == FAMILY_V4)
				__builtin_memcpy(src.addr, key.src_addr, 4);
			else
				__builtin_memcpy(src.addr, key.src_addr, 8);
			src.family = p.family;
			if (!stun_allowed(&src)) {
				count(&guard_stats, GUARD_DROP_STUN_RATE_LIMITED, bytes);
				return XDP_DROP;
			}
			count(&guard_stats, GUARD_PASS_STUN, bytes);
			return XDP_PASS;
		}
	}
	count(&guard_stats, GUARD_DROP_UNKNOWN_SOURCE, bytes);
	return XDP_DROP;
}
