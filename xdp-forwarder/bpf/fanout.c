// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * fanout: TC (clsact, or TCX on kernels >= 6.6) classifier; 1:N copies of a plain RTP packet.
 *
 * For a UDP datagram to a forwarding port (fwd_ports) carrying RTP whose (destination port,
 * SSRC) has an entry in fanout_map, each of the entry's outputs gets one copy: Ethernet
 * addresses, IP addresses, UDP ports, RTP SSRC (and payload type if asked) are rewritten in the
 * skb, the IPv4 header checksum and the UDP checksum are updated incrementally with the kernel's
 * csum helpers, and bpf_clone_redirect() transmits a clone on the output's interface. The loop
 * is fully unrolled over MAX_OUTPUTS. Afterwards the original is dropped (it was consumed), or,
 * with FANOUT_F_PASS_ORIGINAL, its headers are restored and it continues up the stack.
 *
 * An output must not lead back into the same hook with a (port, SSRC) that has a key: the copy
 * would be fanned out again (the kernel's redirect recursion limit stops it).
 *
 * Attach it to the ingress of the interface plain RTP arrives on (ingest from ffmpeg, GStreamer,
 * cameras) or to the egress of the interface through which userspace hands over its single plain
 * copy. Anything that is not a well-formed RTP packet with a key passes untouched and is counted.
 */
#include <linux/pkt_cls.h>

#include "common.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_PORTS);
	__type(key, __u16);
	__type(value, __u8);
} fwd_ports SEC(".maps");

/* Replaced whole by userspace (one element update) while traffic flows. No prealloc: a replaced
 * element is not reused for an unrelated update while a program may still read it. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_FANOUT_KEYS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct fanout_key);
	__type(value, struct fanout_value);
} fanout_map SEC(".maps");

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
} fanout_stats SEC(".maps");

/* The header fields a copy changes, in wire layout. */
struct hdr_state {
	__u8 macs[12];  /* destination MAC, source MAC */
	__u8 addrs[32]; /* IP source, IP destination (IPv4: first 8 bytes) */
	__be16 ports[2];/* UDP source, destination */
	__u8 rtp0[4];   /* RTP bytes 0..3: V/P/X/CC, M/PT, sequence number */
	__be32 ssrc;
};

/* Offsets in the frame of the fields above (Ethernet header at 0). */
struct offsets {
	__u32 addrs;
	__u32 addr_len; /* 8 or 32 */
	__u32 ip_check; /* 0 for IPv6 */
	__u32 udp;
	__u32 udp_check;
	__u32 rtp;
	__u64 l4_flags; /* flags for bpf_l4_csum_replace besides the pseudo-header flag */
};

/* Rewrites the skb from `cur` to `next` and updates the checksums. Returns 0 on success. */
static __always_inline int rewrite_skb(struct __sk_buff *skb, const struct offsets *o,
				       struct hdr_state *cur, const struct hdr_state *next)
{
	__s64 addr_diff, rest_diff;
	__u32 alen = o->addr_len == 32 ? 32 : 8;
	int ret;

	addr_diff = bpf_csum_diff((__be32 *)cur->addrs, alen, (__be32 *)next->addrs, alen, 0);
	/* Ports, RTP word 0 and SSRC are 16-bit aligned relative to the UDP header, so they can be
	 * summed as one block: they are contiguous in hdr_state. */
	rest_diff = bpf_csum_diff((__be32 *)cur->ports, 12, (__be32 *)next->ports, 12, 0);
	if (addr_diff < 0 || rest_diff < 0)
		return -1;

	if (bpf_skb_store_bytes(skb, 0, next->macs, 12, 0))
		return -1;
	if (bpf_skb_store_bytes(skb, o->addrs, next->addrs, alen, 0))
		return -1;
	if (bpf_skb_store_bytes(skb, o->udp, next->ports, 4, 0))
		return -1;
	if (bpf_skb_store_bytes(skb, o->rtp, next->rtp0, 4, 0))
		return -1;
	if (bpf_skb_store_bytes(skb, o->rtp + 8, &next->ssrc, 4, 0))
		return -1;
	if (o->ip_check && bpf_l3_csum_replace(skb, o->ip_check, 0, addr_diff, 0))
		return -1;
	/* Addresses are in the pseudo header: BPF_F_PSEUDO_HDR keeps CHECKSUM_PARTIAL skbs right. */
	ret = bpf_l4_csum_replace(skb, o->udp_check, 0, addr_diff, BPF_F_PSEUDO_HDR | o->l4_flags);
	if (ret == -22 /* -EINVAL */ && (o->l4_flags & BPF_F_IPV6))
		/* Kernels before BPF_F_IPV6 existed reject the flag; they do not need it. */
		ret = bpf_l4_csum_replace(skb, o->udp_check, 0, addr_diff,
					  BPF_F_PSEUDO_HDR | (o->l4_flags & ~BPF_F_IPV6));
	if (ret)
		return -1;
	if (bpf_l4_csum_replace(skb, o->udp_check, 0, rest_diff, o->l4_flags & ~BPF_F_IPV6))
		return -1;
	__builtin_memcpy(cur, next, sizeof(*cur));
	return 0;
}

/* Fills next->macs and *ifindex for an output: stored MACs, or a fib lookup. Returns 0 on success. */
static __always_inline int resolve_l2(struct __sk_buff *skb, const struct fanout_output *out,
				      struct hdr_state *next, __u32 *ifindex)
{
	struct bpf_fib_lookup fib = {};
	int rc;

	if (!mac_is_zero(out->dst_mac)) {
		__builtin_memcpy(next->macs, out->dst_mac, 6);
		__builtin_memcpy(next->macs + 6, out->src_mac, 6);
		*ifindex = out->ifindex;
		return 0;
	}
	fib.l4_protocol = IPPROTO_UDP;
	fib.sport = out->src_port;
	fib.dport = out->dst_port;
	if (out->family == FAMILY_V4) {
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
		rc = bpf_fib_lookup(skb, &fib, sizeof(fib), BPF_FIB_LOOKUP_OUTPUT);
	} else {
		fib.ifindex = skb->ingress_ifindex ? skb->ingress_ifindex : skb->ifindex;
		rc = bpf_fib_lookup(skb, &fib, sizeof(fib), 0);
	}
	if (rc != BPF_FIB_LKUP_RET_SUCCESS)
		return -1;
	__builtin_memcpy(next->macs, fib.dmac, 6);
	__builtin_memcpy(next->macs + 6, fib.smac, 6);
	*ifindex = fib.ifindex;
	return 0;
}

SEC("classifier")
int fanout(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct fanout_value *val;
	struct fanout_key key = {};
	struct hdr_state orig, cur, next;
	struct offsets o = {};
	struct pkt p = {};
	enum parse_result r;
	__u16 port;
	__u8 *rtp;
	__u32 need, i;
	int broken = 0;

	/* Headers up to the end of the RTP fixed header must be in the linear area. */
	need = sizeof(struct ethhdr) + sizeof(struct ipv6hdr) + sizeof(struct udphdr) + RTP_HEADER_LEN;
	if (data + need > data_end && skb->len > (data_end - data)) {
		bpf_skb_pull_data(skb, skb->len < need ? skb->len : need);
		data = (void *)(long)skb->data;
		data_end = (void *)(long)skb->data_end;
	}

	r = parse_udp(data, data_end, &p);
	if (r == PARSE_NOT_UDP || !p.has_port)
		return TC_ACT_OK;
	port = p.dst_port;
	if (!bpf_map_lookup_elem(&fwd_ports, &port))
		return TC_ACT_OK;
	if (r == PARSE_UNSUPPORTED) {
		count(&fanout_stats, FWD_PASS_UNSUPPORTED, skb->len);
		return TC_ACT_OK;
	}
	if (r == PARSE_MALFORMED) {
		count(&fanout_stats, FWD_PASS_MALFORMED, skb->len);
		return TC_ACT_OK;
	}
	if (skb->gso_size) {
		count(&fanout_stats, FWD_PASS_UNSUPPORTED, skb->len);
		return TC_ACT_OK;
	}

	rtp = data + (p.payload_off & 0xff);
	if ((void *)(rtp + RTP_HEADER_LEN) > data_end || !is_rtp(rtp, p.payload_len)) {
		count(&fanout_stats, FWD_PASS_NOT_RTP, skb->len);
		return TC_ACT_OK;
	}
	key.dst_port = bpf_htons(port);
	__builtin_memcpy(&key.ssrc, rtp + 8, 4);
	val = bpf_map_lookup_elem(&fanout_map, &key);
	if (!val) {
		count(&fanout_stats, FWD_PASS_NO_KEY, skb->len);
		return TC_ACT_OK;
	}

	/* Snapshot the original header fields. */
	__builtin_memset(&orig, 0, sizeof(orig));
	__builtin_memcpy(orig.macs, data, 12);
	if (p.family == FAMILY_V4) {
		struct iphdr *ip = data + sizeof(struct ethhdr);

		if ((void *)(ip + 1) > data_end)
			return TC_ACT_OK;
		__builtin_memcpy(orig.addrs, &ip->saddr, 8);
		o.addrs = sizeof(struct ethhdr) + offsetof(struct iphdr, saddr);
		o.addr_len = 8;
		o.ip_check = sizeof(struct ethhdr) + offsetof(struct iphdr, check);
		o.l4_flags = BPF_F_MARK_MANGLED_0;
	} else {
		struct ipv6hdr *ip6 = data + sizeof(struct ethhdr);

		if ((void *)(ip6 + 1) > data_end)
			return TC_ACT_OK;
		__builtin_memcpy(orig.addrs, &ip6->saddr, 32);
		o.addrs = sizeof(struct ethhdr) + offsetof(struct ipv6hdr, saddr);
		o.addr_len = 32;
		o.ip_check = 0;
		o.l4_flags = BPF_F_IPV6;
	}
	{
		struct udphdr *udp = data + (p.l4_off & 0xff);

		if ((void *)(udp + 1) > data_end)
			return TC_ACT_OK;
		orig.ports[0] = udp->source;
		orig.ports[1] = udp->dest;
	}
	__builtin_memcpy(orig.rtp0, rtp, 4);
	__builtin_memcpy(&orig.ssrc, rtp + 8, 4);
	o.udp = p.l4_off;
	o.udp_check = p.l4_off + offsetof(struct udphdr, check);
	o.rtp = p.payload_off;
	/* Packet pointers are invalid from here on: only helpers touch the packet. */

	__builtin_memcpy(&cur, &orig, sizeof(cur));
	count(&fanout_stats, FWD_MATCHED, skb->len);

#pragma unroll
	for (i = 0; i < MAX_OUTPUTS; i++) {
		const struct fanout_output *out;
		struct output_counter *oc;
		__u32 idx, ifindex = 0;

		if (i >= val->count)
			break;
		out = &val->outputs[i];
		idx = out->counter_idx;
		oc = bpf_map_lookup_elem(&output_counters, &idx);

		__builtin_memcpy(&next, &cur, sizeof(next));
		if (out->family != p.family) {
			if (oc)
				oc->tx_errors += 1;
			continue;
		}
		if (resolve_l2(skb, out, &next, &ifindex) || ifindex == 0) {
			if (oc)
				oc->fib_errors += 1;
			continue;
		}
		__builtin_memset(next.addrs, 0, sizeof(next.addrs));
		if (p.family == FAMILY_V4) {
			__builtin_memcpy(next.addrs, out->src_addr, 4);
			__builtin_memcpy(next.addrs + 4, out->dst_addr, 4);
		} else {
			__builtin_memcpy(next.addrs, out->src_addr, 16);
			__builtin_memcpy(next.addrs + 16, out->dst_addr, 16);
		}
		next.ports[0] = out->src_port;
		next.ports[1] = out->dst_port;
		__builtin_memcpy(next.rtp0, orig.rtp0, 4);
		if (out->pt != PT_KEEP)
			next.rtp0[1] = (orig.rtp0[1] & 0x80) | (out->pt & 0x7f);
		next.ssrc = out->ssrc;

		if (rewrite_skb(skb, &o, &cur, &next)) {
			/* The skb may be half rewritten: stop, and never pass it on. */
			if (oc)
				oc->tx_errors += 1;
			broken = 1;
			break;
		}
		if (bpf_clone_redirect(skb, ifindex, 0)) {
			if (oc)
				oc->tx_errors += 1;
			continue;
		}
		if (oc) {
			oc->packets += 1;
			oc->bytes += skb->len;
		}
	}

	if (!broken && (val->flags & FANOUT_F_PASS_ORIGINAL)) {
		if (rewrite_skb(skb, &o, &cur, &orig)) {
			/* Cannot restore: never hand a half-rewritten packet to the stack. */
			count(&fanout_stats, FWD_CONSUMED, skb->len);
			return TC_ACT_SHOT;
		}
		count(&fanout_stats, FWD_PASS_ORIGINAL, skb->len);
		return TC_ACT_OK;
	}
	/* Consumed. TC_ACT_SHOT, not TC_ACT_STOLEN: under TCX only OK/SHOT/REDIRECT are verdicts;
	 * STOLEN means "next program", and the last copy's headers would go up the stack. */
	count(&fanout_stats, FWD_CONSUMED, skb->len);
	return TC_ACT_SHOT;
}
