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

/* IPv6 extension headers parse_udp() walks to find UDP (hop-by-hop, routing, destination
 * options; a fragment header ends the walk): at most this many, within this many bytes after the
 * fixed header. Longer chains are not parsed (pkt.ext_unparsed). */
#define IPV6_MAX_EXT_HEADERS 4
#define IPV6_MAX_EXT_BYTES 256
/* Mask that keeps a header offset provably in range for the verifier: every offset parse_udp
 * hands out is below it (Ethernet + IPv6 + IPV6_MAX_EXT_BYTES + a fragment header < 512). */
#define L4_OFF_MASK 0x1ff

/* Result of parse_udp(). */
enum parse_result {
	PARSE_OK = 0,        /* IPv4 without options and not fragmented, or IPv6 with UDP next */
	PARSE_NOT_UDP,       /* not IPv4/IPv6, not UDP, or too short to tell: not ours */
	PARSE_UNSUPPORTED,   /* UDP we do not rewrite: IPv4 options / fragment, IPv6 fragment or
			      * extension headers (pkt.ipv6_ext: then every field is valid, as for
			      * PARSE_OK); port may be known */
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
	__u8 ipv6_ext;      /* IPv6 extension headers walked before UDP (PARSE_UNSUPPORTED) */
	__u8 ext_unparsed;  /* IPv6 extension header chain beyond the bounds above: not parsed */
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
	p->ipv6_ext = 0;
	p->ext_unparsed = 0;
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
		__u32 off = sizeof(*eth) + sizeof(*ip6);
		__u32 plen, ext_bytes;
		__u8 nexthdr;
		int i;

		if ((void *)(ip6 + 1) > data_end)
			return PARSE_NOT_UDP;
		if (ip6->version != 6)
			return PARSE_NOT_UDP;
		p->family = FAMILY_V6;
		nexthdr = ip6->nexthdr;
		/* Extension headers, bounded: a datagram to a media port cannot slip past the guard's
		 * 5-tuple check by carrying a hop-by-hop or destination options header. */
#pragma unroll
		for (i = 0; i < IPV6_MAX_EXT_HEADERS; i++) {
			__u8 *ext;

			if (nexthdr != IPPROTO_HOPOPTS && nexthdr != IPPROTO_ROUTING &&
			    nexthdr != IPPROTO_DSTOPTS && nexthdr != IPPROTO_FRAGMENT)
				break;
			ext = data + (off & L4_OFF_MASK);
			if ((void *)(ext + 8) > data_end)
				return PARSE_NOT_UDP;
			if (nexthdr == IPPROTO_FRAGMENT) {
				/* As IPv4 fragments: never touched; the port is learned from a first
				 * fragment so that callers can count it. */
				if (ext[0] == IPPROTO_UDP && !(ext[2] | (ext[3] & 0xf8))) {
					udp = data + ((off + 8) & L4_OFF_MASK);
					if ((void *)(udp + 1) <= data_end) {
						p->dst_port = bpf_ntohs(udp->dest);
						p->has_port = 1;
					}
				}
				return PARSE_UNSUPPORTED;
			}
			nexthdr = ext[0];
			off += ((__u32)ext[1] + 1) * 8;
			if (off > sizeof(*eth) + sizeof(*ip6) + IPV6_MAX_EXT_BYTES) {
				p->ext_unparsed = 1;
				return PARSE_NOT_UDP;
			}
			p->ipv6_ext = 1;
		}
		if (nexthdr != IPPROTO_UDP) {
			if (nexthdr == IPPROTO_HOPOPTS || nexthdr == IPPROTO_ROUTING ||
			    nexthdr == IPPROTO_DSTOPTS || nexthdr == IPPROTO_FRAGMENT)
				p->ext_unparsed = 1;
			/* Anything else (ESP, AH, ICMPv6, TCP...) is not ours. */
			return PARSE_NOT_UDP;
		}
		udp = data + (off & L4_OFF_MASK);
		if ((void *)(udp + 1) > data_end)
			return PARSE_NOT_UDP;
		p->dst_port = bpf_ntohs(udp->dest);
		p->has_port = 1;
		p->l4_off = off;
		ext_bytes = off - sizeof(*eth) - sizeof(*ip6);
		plen = bpf_ntohs(ip6->payload_len);
		p->ip_len = plen + sizeof(*ip6);
		if (plen < ext_bytes + sizeof(*udp) ||
		    data + sizeof(*eth) + sizeof(*ip6) + plen > data_end)
			return PARSE_MALFORMED;
		ip_payload_len = plen - ext_bytes;
	} else {
		return PARSE_NOT_UDP;
	}

	{
		__u32 ulen;

		/* Again, for the verifier: the compiler may rebuild `udp` from its offset here. */
		if ((void *)(udp + 1) > data_end)
			return PARSE_NOT_UDP;
		ulen = bpf_ntohs(udp->len);

		if (ulen < sizeof(*udp) || ulen > ip_payload_len)
			return PARSE_MALFORMED;
		p->payload_off = p->l4_off + sizeof(*udp);
		p->payload_len = ulen - sizeof(*udp);
	}
	/* The rewriting programs only handle the fixed IPv6 header. */
	return p->ipv6_ext ? PARSE_UNSUPPORTED : PARSE_OK;
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
