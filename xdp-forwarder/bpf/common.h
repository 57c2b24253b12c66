/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Packet parsing and checksum helpers shared by the edge-sfu BPF programs. Everything is
 * __always_inline: each program is one function after inlining, as the verifier likes it.
 *
 * Parsing rule: every read through a packet pointer is preceded by a check against data_end.
 */
#ifndef EDGE_SFU_COMMON_H
#define EDGE_SFU_COMMON_H

#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "maps.h"

#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif

#define IP_MF 0x2000
#define IP_OFFSET 0x1fff

#define RTP_HEADER_LEN 12
#define STUN_HEADER_LEN 20
#define STUN_MAGIC_COOKIE 0x2112A442 /* bytes 4..7 of a STUN message */

/* Result of parse_udp(). */
enum parse_result {
	PARSE_OK = 0,        /* IPv4 without options and not fragmented, or IPv6 with UDP next */
	PARSE_NOT_UDP,       /* not IPv4/IPv6, not UDP, or too short to tell: not ours */
	PARSE_UNSUPPORTED,   /* UDP we do not touch: IPv4 options / fragment; port may be known */
	PARSE_MALFORMED,     /* UDP header present but lengths inconsistent; port known */
};

/* Where things are in a parsed IPv4/IPv6 + UDP frame (offsets from the Ethernet header). */
struct pkt {
	__u32 l4_off;       /* UDP header */
	__u32 payload_off;  /* UDP payload */
	__u32 payload_len;  /* from the UDP length field, validated against the IP length */
	__u32 ip_len;       /* IP total length (IPv4) or header + payload length (IPv6) */
	__u16 dst_port;     /* host order; valid for OK/UNSUPPORTED-with-port/MALFORMED */
	__u8 family;        /* FAMILY_V4 / FAMILY_V6 */
	__u8 has_port;      /* dst_port is valid */
};

/*
 * Parses Ethernet + IPv4/IPv6 + UDP. Only untagged Ethernet frames are parsed (VLAN-tagged frames
 * are NOT_UDP and pass untouched).
 */
static __always_inline enum parse_result parse_udp(void *data, void *data_end, struct pkt *p)
{
	struct ethhdr *eth = data;
	struct udphdr *udp;
	__u32 ip_payload_len;

	p->has_port = 0;
	if ((void *)(eth + 1) > data_end)
		return PARSE_NOT_UDP;

	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);
		__u32 ihl_bytes, tot_len;

		if ((void *)(ip + 1) > data_end)
			return PARSE_NOT_UDP;
		if (ip->version != 4 || ip->protocol != IPPROTO_UDP)
			return PARSE_NOT_UDP;
		p->family = FAMILY_V4;
		ihl_bytes = ip->ihl * 4;
		tot_len = bpf_ntohs(ip->tot_len);
		if (ip->ihl != 5 || (ip->frag_off & bpf_htons(IP_MF | IP_OFFSET))) {
			/* Options or a fragment: never touched. Learn the port when the UDP header of a
			 * first fragment / optioned packet is there, so callers can count it. */
			if (ip->ihl >= 5 && !(ip->frag_off & bpf_htons(IP_OFFSET))) {
				__u32 off = sizeof(*eth) + (ihl_bytes & 0x3c);

				udp = data + off;
				if ((void *)(udp + 1) <= data_end) {
					p->dst_port = bpf_ntohs(udp->dest);
					p->has_port = 1;
				}
			}
			return PARSE_UNSUPPORTED;
		}
		udp = (void *)(ip + 1);
		if ((void *)(udp + 1) > data_end)
			return PARSE_NOT_UDP;
		p->dst_port = bpf_ntohs(udp->dest);
		p->has_port = 1;
		p->l4_off = sizeof(*eth) + sizeof(*ip);
		p->ip_len = tot_len;
		if (tot_len < sizeof(*ip) + sizeof(*udp) || data + sizeof(*eth) + tot_len > data_end)
			return PARSE_MALFORMED;
		ip_payload_len = tot_len - sizeof(*ip);
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		__u32 plen;

		if ((void *)(ip6 + 1) > data_end)
			return PARSE_NOT_UDP;
		if (ip6->version != 6 || ip6->nexthdr != IPPROTO_UDP)
			/* Extension headers (fragments included) are not parsed: pass untouched. */
			return PARSE_NOT_UDP;
		p->family = FAMILY_V6;
		udp = (void *)(ip6 + 1);
		if ((void *)(udp + 1) > data_end)
			return PARSE_NOT_UDP;
		p->dst_port = bpf_ntohs(udp->dest);
		p->has_port = 1;
		p->l4_off = sizeof(*eth) + sizeof(*ip6);
		plen = bpf_ntohs(ip6->payload_len);
		p->ip_len = plen + sizeof(*ip6);
		if (plen < sizeof(*udp) || data + sizeof(*eth) + sizeof(*ip6) + plen > data_end)
			return PARSE_MALFORMED;
		ip_payload_len = plen;
	} else {
		return PARSE_NOT_UDP;
	}

	{
		__u32 ulen = bpf_ntohs(udp->len);

		if (ulen < sizeof(*udp) || ulen > ip_payload_len)
			return PARSE_MALFORMED;
		p->payload_off = p->l4_off + sizeof(*udp);
		p->payload_len = ulen - sizeof(*udp);
	}
	return PARSE_OK;
}

/* Adds one to a per-CPU {packets, bytes} counter. */
static __always_inline void count(void *map, __u32 idx, __u64 bytes)
{
	struct counter *c = bpf_map_lookup_elem(map, &idx);

	if (c) {
		c->packets += 1;
		c->bytes += bytes;
	}
}

/* RTP check on the first bytes of a UDP payload: version 2, not RTCP (RFC 5761 demux: second
 * byte 192..223 is RTCP), and the CSRC list fits. Extensions and padding are allowed: only the
 * fixed header (byte 1 and bytes 8..11) is ever rewritten. */
static __always_inline int is_rtp(const __u8 *rtp, __u32 payload_len)
{
	__u32 csrc_bytes;

	if (payload_len < RTP_HEADER_LEN)
		return 0;
	if ((rtp[0] >> 6) != 2)
		return 0;
	if (rtp[1] >= 192 && rtp[1] <= 223)
		return 0;
	csrc_bytes = (rtp[0] & 0x0f) * 4;
	if (RTP_HEADER_LEN + csrc_bytes > payload_len)
		return 0;
	return 1;
}

/* Ones' complement helpers (RFC 1071 / RFC 1624), on raw memory-order words. */
static __always_inline __u32 csum_add32(__u32 a, __u32 b)
{
	__u32 r = a + b;

	return r + (r < a);
}

static __always_inline __u16 csum_fold32(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)sum;
}

/* Applies a checksum difference (as returned by bpf_csum_diff) to a stored checksum field:
 * HC' = ~(~HC + diff). */
static __always_inline __u16 csum_apply(__u16 check, __s64 diff)
{
	__u32 sum = csum_add32((__u16)~check, (__u32)diff);

	return (__u16)~csum_fold32(sum);
}

static __always_inline int mac_is_zero(const __u8 *mac)
{
	return (mac[0] | mac[1] | mac[2] | mac[3] | mac[4] | mac[5]) == 0;
}

#endif /* EDGE_SFU_COMMON_H */
