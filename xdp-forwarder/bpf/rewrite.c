// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * rewrite: XDP; the 1:1 case. A plain RTP packet whose (destination port, SSRC) has an entry in
 * rewrite_map is rewritten in place (Ethernet and IP addresses, UDP ports, RTP SSRC and payload
 * type, IPv4 header checksum and UDP checksum updated incrementally) and sent with XDP_TX (same
 * interface) or bpf_redirect() (another interface), before the kernel allocates an skb.
 *
 * XDP has no way to clone a frame with per-copy changes, so 1:N is fanout.c at TC. Runs alone
 * on an interface, or behind guard.c through its guard_next tail call.
 */
#include "common.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_PORTS);
	__type(key, __u16);
	__type(value, __u8);
} fwd_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_FANOUT_KEYS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct fanout_key);
	__type(value, struct fanout_output);
} rewrite_map SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_OUTPUT_COUNTERS);
	__type(key, __u32);
	__type(value, struct output_counter);
} output_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, FWD_STAT_MAX);
	__type(key, __u32);
	__type(value, struct counter);
} rewrite_stats SEC(".maps");

SEC("xdp")
int rewrite(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u64 bytes = data_end - data;
	const struct fanout_output *out;
	struct output_counter *oc;
	struct fanout_key key = {};
	struct bpf_fib_lookup fib = {};
	struct pkt p = {};
	enum parse_result r;
	struct ethhdr *eth = data;
	struct udphdr *udp;
	__u8 *rtp;
	__u8 old_rest[12], new_rest[12];
	__u8 new_addrs[32] = {};
	__s64 addr_diff, rest_diff;
	__u32 idx, ifindex;
	__u16 port;

	r = parse_udp(data, data_end, &p);
	if (r == PARSE_NOT_UDP || !p.has_port)
		return XDP_PASS;
	port = p.dst_port;
	if (!bpf_map_lookup_elem(&fwd_ports, &port))
		return XDP_PASS;
	if (r == PARSE_UNSUPPORTED) {
		count(&rewrite_stats, FWD_PASS_UNSUPPORTED, bytes);
		return XDP_PASS;
	}
	if (r == PARSE_MALFORMED) {
		count(&rewrite_stats, FWD_PASS_MALFORMED, bytes);
		return XDP_PASS;
	}
	udp = data + (p.l4_off & 0xff);
	if ((void *)(udp + 1) > data_end)
		return XDP_PASS;
	rtp = data + (p.payload_off & 0xff);
	if ((void *)(rtp + RTP_HEADER_LEN) > data_end || !is_rtp(rtp, p.payload_len)) {
		count(&rewrite_stats, FWD_PASS_NOT_RTP, bytes);
		return XDP_PASS;
	}
	key.dst_port = udp->dest;
	__builtin_memcpy(&key.ssrc, rtp + 8, 4);
	out = bpf_map_lookup_elem(&rewrite_map, &key);
	if (!out) {
		count(&rewrite_stats, FWD_PASS_NO_KEY, bytes);
		return XDP_PASS;
	}
	count(&rewrite_stats, FWD_MATCHED, bytes);
	idx = out->counter_idx;
	oc = bpf_map_lookup_elem(&output_counters, &idx);
	if (out->family != p.family) {
		if (oc)
			oc->tx_errors += 1;
		return XDP_DROP;
	}

	/* Next hop. */
	if (!mac_is_zero(out->dst_mac)) {
		__builtin_memcpy(fib.dmac, out->dst_mac, 6);
		__builtin_memcpy(fib.smac, out->src_mac, 6);
		ifindex = out->ifindex;
	} else {
		int rc;

		fib.l4_protocol = IPPROTO_UDP;
		fib.sport = out->src_port;
		fib.dport = out->dst_port;
		fib.tot_len = p.ip_len;
		if (p.family == FAMILY_V4) {
			fib.family = AF_INET;
			__builtin_memcpy(&fib.ipv4_src, out->src_addr, 4);
			__builtin_memcpy(&fib.ipv4_dst, out->dst_addr, 4);
		} else {
			fib.family = AF_INET6;
			__builtin_memcpy(fib.ipv6_src, out->src_addr, 16);
			__builtin_memcpy(fib.ipv6_dst, out->dst_addr, 16);
		}
		if (out->ifindex) {
			fib.ifindex = out->ifindex;
			rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), BPF_FIB_LOOKUP_OUTPUT);
		} else {
			fib.ifindex = ctx->ingress_ifindex;
			rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);
		}
		if (rc != BPF_FIB_LKUP_RET_SUCCESS) {
			/* Cannot be sent from here; the stack (or the SFU) sees the original. */
			if (oc)
				oc->fib_errors += 1;
			return XDP_PASS;
		}
		ifindex = fib.ifindex;
	}
	if (ifindex == 0) {
		if (oc)
			oc->fib_errors += 1;
		return XDP_PASS;
	}

	/* Checksum differences, then the writes. Re-check bounds: the verifier forgets nothing here,
	 * but data/data_end are unchanged (no helper that moves packet data was called). */
	if ((void *)(udp + 1) > data_end || (void *)(rtp + RTP_HEADER_LEN) > data_end ||
	    (void *)(eth + 1) > data_end)
		return XDP_PASS;
	__builtin_memcpy(old_rest, &udp->source, 4);
	__builtin_memcpy(old_rest + 4, rtp, 4);
	__builtin_memcpy(old_rest + 8, rtp + 8, 4);
	__builtin_memcpy(new_rest, &out->src_port, 2);
	__builtin_memcpy(new_rest + 2, &out->dst_port, 2);
	__builtin_memcpy(new_rest + 4, rtp, 4);
	if (out->pt != PT_KEEP)
		new_rest[5] = (rtp[1] & 0x80) | (out->pt & 0x7f);
	__builtin_memcpy(new_rest + 8, &out->ssrc, 4);
	rest_diff = bpf_csum_diff((__be32 *)old_rest, 12, (__be32 *)new_rest, 12, 0);

	if (p.family == FAMILY_V4) {
		struct iphdr *ip = data + sizeof(struct ethhdr);

		if ((void *)(ip + 1) > data_end)
			return XDP_PASS;
		__builtin_memcpy(new_addrs, out->src_addr, 4);
		__builtin_memcpy(new_addrs + 4, out->dst_addr, 4);
		addr_diff = bpf_csum_diff((__be32 *)&ip->saddr, 8, (__be32 *)new_addrs, 8, 0);
		if (addr_diff < 0 || rest_diff < 0)
			return XDP_PASS;
		ip->check = csum_apply(ip->check, addr_diff);
		__builtin_memcpy(&ip->saddr, new_addrs, 8);
		/* A zero UDP checksum over IPv4 means "none": keep it so. */
		if (udp->check) {
			__u16 c = csum_apply(udp->check, addr_diff);

			c = csum_apply(c, rest_diff);
			udp->check = c ? c : 0xffff;
		}
	} else {
		struct ipv6hdr *ip6 = data + sizeof(struct ethhdr);
		__u16 c;

		if ((void *)(ip6 + 1) > data_end)
			return XDP_PASS;
		__builtin_memcpy(new_addrs, out->src_addr, 16);
		__builtin_memcpy(new_addrs + 16, out->dst_addr, 16);
		addr_diff = bpf_csum_diff((__be32 *)&ip6->saddr, 32, (__be32 *)new_addrs, 32, 0);
		if (addr_diff < 0 || rest_diff < 0)
			return XDP_PASS;
		__builtin_memcpy(&ip6->saddr, new_addrs, 32);
		c = csum_apply(udp->check, addr_diff);
		c = csum_apply(c, rest_diff);
		udp->check = c ? c : 0xffff;
	}
	__builtin_memcpy(&udp->source, new_rest, 4);
	__builtin_memcpy(rtp, new_rest + 4, 4);
	__builtin_memcpy(rtp + 8, new_rest + 8, 4);
	__builtin_memcpy(eth->h_dest, fib.dmac, 6);
	__builtin_memcpy(eth->h_source, fib.smac, 6);

	if (oc) {
		oc->packets += 1;
		oc->bytes += bytes;
	}
	if (ifindex == ctx->ingress_ifindex)
		return XDP_TX;
	return bpf_redirect(ifindex, 0);
}
