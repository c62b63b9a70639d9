// SPDX-License-Identifier: Apache-2.0
// Mirrorflow probe: the kernel half of the flow cache (compiled by bcc).
//
// It parses, looks up and counts; nothing else. Expiry, templates and export are userspace.
// One parser serves both hooks: TC clsact ingress (the default) and XDP (--attach xdp).
//
// Build-time settings come as -D defines from kernel.py (never by editing this text):
//   MF_MAXFLOWS      entries of each flow map (the --maxflows limit; inserts beyond it are
//                    refused and counted, never evicted: the maps are HASH, never LRU)
//   MF_XDP           build the XDP entry point `mf_xdp` instead of the TC one `mf_ingress`;
//                    only the context accessors below differ
// Run-time settings live in the `config` array (sampler, key granularity, features).
//
// Draining without losing increments: packets are counted into whichever of `flows_a` /
// `flows_b` the `active` array-of-maps points at. Userspace points it at the other map; the
// kernel's map-in-map update waits for an RCU grace period (synchronize_rcu), so when the
// syscall returns no program is still writing the old map, and userspace can read and empty
// it at leisure.

#include <uapi/linux/bpf.h>
#include <uapi/linux/if_ether.h>
#include <uapi/linux/if_packet.h>
#include <uapi/linux/pkt_cls.h>

// --- the hook's context: everything else is shared ---------------------------------------
#ifdef MF_XDP
// Declared here rather than taken from bcc's helpers.h, which may predate them (5.18+).
static long (*mf_xdp_load_bytes)(struct xdp_md *ctx, __u32 off, void *buf, __u32 len) =
    (void *)BPF_FUNC_xdp_load_bytes;
static __u64 (*mf_xdp_buff_len)(struct xdp_md *ctx) = (void *)BPF_FUNC_xdp_get_buff_len;
#define MF_CTX struct xdp_md
#define MF_LOAD(ctx, off, buf, len) mf_xdp_load_bytes(ctx, off, buf, len)
#define MF_LEN(ctx) ((__u32)mf_xdp_buff_len(ctx))
#define MF_IFINDEX(ctx) ((ctx)->ingress_ifindex)
// XDP sees the frame before the stack: VLAN tags are still in it, nothing is offloaded.
#define MF_VLAN_OFFLOADED(ctx) 0
#define MF_VLAN_TCI(ctx) 0
#else
#define MF_CTX struct __sk_buff
#define MF_LOAD(ctx, off, buf, len) bpf_skb_load_bytes(ctx, off, buf, len)
#define MF_LEN(ctx) ((ctx)->len)
#define MF_IFINDEX(ctx) ((ctx)->ifindex)
// The stack moves the outer 802.1Q/802.1ad tag into skb->vlan_tci before TC ingress.
#define MF_VLAN_OFFLOADED(ctx) ((ctx)->vlan_present)
#define MF_VLAN_TCI(ctx) ((ctx)->vlan_tci)
#endif

#ifndef MF_MAXFLOWS
#define MF_MAXFLOWS 65536
#endif

#define MF_MAX_VLAN_TAGS 3
#define MF_MAX_MPLS_LABELS 8
#define MF_MAX_IPV6_EXT 8

// Key granularity (config.key_fields bits): a cleared bit zeroes that part of the key.
#define KEY_PORTS  (1u << 0)
#define KEY_TOS    (1u << 1)
#define KEY_VLAN   (1u << 2)
#define KEY_IFINDEX (1u << 3)
#define KEY_SRC    (1u << 4)
#define KEY_DST    (1u << 5)
#define KEY_PROTO  (1u << 6)

// Features (config.features bits)
#define FEAT_MPLS  (1u << 0)   // look through MPLS label stacks
#define FEAT_MACS  (1u << 1)   // record the MAC addresses of the flow's first packet

// Sampler modes (config.sampler_mode); numbers are ipt_netflow's / samplerMode's.
#define SAMPLER_OFF 0
#define SAMPLER_DETERMINISTIC 1
#define SAMPLER_RANDOM 2
#define SAMPLER_HASH 3

// Indexes into the per-CPU `counters` array; stats.py names them in the same order.
enum mf_counter {
    C_FRAMES = 0,          // every frame the program saw
    C_FRAME_BYTES,         // their lengths on the wire (without FCS)
    C_IP_PACKETS,          // IPv4/IPv6 packets parsed (before sampling)
    C_IP_BYTES,            // their IP lengths
    C_ACCOUNTED_PACKETS,   // packets counted into a flow
    C_ACCOUNTED_BYTES,
    C_REFUSED_PACKETS,     // the flow map was full: packets of new flows not counted
    C_REFUSED_BYTES,
    C_NEW_FLOWS,           // inserts into the flow map
    C_INSERT_RACES,        // another CPU inserted the same key first (counted, not lost)
    C_NON_IP,              // frames that are not IP after L2/VLAN/MPLS
    C_PROMISC_ONLY,        // frames seen only because the interface is promiscuous
    C_SAMPLER_SELECTED,
    C_SAMPLER_DISCARDED,
    C_FRAGMENTS,           // IPv4/IPv6 fragments (non-first fragments are keyed without ports)
    C_TRUNCATED,           // headers cut short: counted with what could be read
    C_SELF_EXPORT,         // our own export packets, never accounted
    C_MPLS,                // packets that carried an MPLS label stack
    C_VLAN,                // packets that carried at least one VLAN tag
    C_NUM
};

struct flow_key {
    __u8  src[16];     // IPv4 in the first 4 bytes
    __u8  dst[16];
    __u32 ifindex;
    __u16 sport;
    __u16 dport;       // ICMP/ICMPv6: type << 8 | code (the usual NetFlow way)
    __u16 vlan;        // outer VLAN id, 0 if untagged
    __u8  proto;
    __u8  tos;         // IPv4 TOS / IPv6 traffic class
    __u8  ipver;       // 4 or 6
    __u8  pad[3];
};

struct flow_val {
    __u64 packets;
    __u64 bytes;       // IP length (IPv4 total length, IPv6 payload length + 40)
    __u64 first_ns;    // bpf_ktime_get_ns (CLOCK_MONOTONIC)
    __u64 last_ns;
    __u64 tcp_flags;   // OR of the flags (64-bit: the only width bcc's atomic OR supports)
    __u32 mpls_top;    // top label stack entry of the first packet (label<<12|exp<<9|s<<8|ttl)
    __u32 flow_label;  // IPv6 flow label of the first packet
    __u16 inner_vlan;  // second VLAN tag (QinQ), 0 if none
    __u8  min_ttl;
    __u8  max_ttl;
    __u8  src_mac[6];
    __u8  dst_mac[6];
    __u8  frag;        // 1 if fragments were counted into this flow
    __u8  mpls_depth;
    __u8  pad[6];
};

#define MF_MAX_SELF_PORTS 8

struct probe_config {
    __u32 sampler_mode;
    __u32 sampler_n;
    __u32 key_fields;
    __u32 features;
    // UDP destination ports of the self_export entries: only a packet to one of them costs
    // the two self_export lookups (a flood of other UDP packets does not)
    __u16 self_dports[MF_MAX_SELF_PORTS];
    __u32 n_self_dports;  // 0..MF_MAX_SELF_PORTS; more entries than that: look up always
    __u32 pad;
};

struct mac_addr {
    __u8 addr[6];
};

struct self_key {      // a destination we export to: its packets are ours, never accounted
    __u8  addr[16];
    __u16 dport;
    __u16 sport;       // our socket's local port (0 = any)
    __u8  ipver;
    __u8  pad[3];
};

BPF_HASH(flows_a, struct flow_key, struct flow_val, MF_MAXFLOWS);
BPF_HASH(flows_b, struct flow_key, struct flow_val, MF_MAXFLOWS);
BPF_ARRAY_OF_MAPS(active, "flows_a", 1);
BPF_ARRAY(config, struct probe_config, 1);
BPF_PERCPU_ARRAY(counters, __u64, C_NUM);
BPF_PERCPU_ARRAY(sampler_state, __u64, 1);
BPF_HASH(self_export, struct self_key, __u8, 64);
// XDP only: the MAC address of each attached interface (ifindex → MAC), to tell frames seen
// only in promiscuous mode (TC reads skb->pkt_type instead).
BPF_HASH(if_macs, __u32, struct mac_addr, 64);

static __always_inline void count(__u32 idx, __u64 n)
{
    __u64 *c = counters.lookup(&idx);
    if (c)
        *c += n;
}

static __always_inline __u32 key_hash(const struct flow_key *k)
{
    // FNV-1a over the key's 32-bit words: spreads well enough for a 1-in-N flow selection.
    const __u32 *w = (const __u32 *)k;
    __u32 h = 2166136261u;
#pragma unroll
    for (int i = 0; i < (int)(sizeof(*k) / 4); i++) {
        h ^= w[i];
        h *= 16777619u;
    }
    return h ^ (h >> 16);
}

// Walks 802.1Q / 802.1ad / QinQ tags starting at *off (ethertype *proto already read).
// The first tag seen anywhere is the key's VLAN, the second the inner VLAN.
static __always_inline int parse_vlans(MF_CTX *ctx, __u32 *off, __u16 *proto,
                                       struct flow_key *key, struct flow_val *val, int *ntags)
{
#pragma unroll
    for (int i = 0; i < MF_MAX_VLAN_TAGS; i++) {
        if (*proto != ETH_P_8021Q && *proto != ETH_P_8021AD && *proto != 0x9100)
            break;
        __u8 tag[4];
        if (MF_LOAD(ctx, *off, tag, sizeof(tag)) < 0) {
            count(C_TRUNCATED, 1);
            return -1;
        }
        __u16 vid = (((__u16)tag[0] << 8) | tag[1]) & 0x0fff;
        if (*ntags == 0)
            key->vlan = vid;
        else if (*ntags == 1)
            val->inner_vlan = vid;
        (*ntags)++;
        *proto = ((__u16)tag[2] << 8) | tag[3];
        *off += 4;
    }
    return 0;
}

// A frame that reached us only because the interface is promiscuous (not to our MAC).
static __always_inline int other_host(MF_CTX *ctx, const __u8 *eth)
{
#ifdef MF_XDP
    if (eth[0] & 1)  // broadcast and multicast are everybody's
        return 0;
    __u32 ifindex = ctx->ingress_ifindex;
    struct mac_addr *m = if_macs.lookup(&ifindex);
    if (!m)
        return 0;
    int differ = 0;
#pragma unroll
    for (int i = 0; i < 6; i++)
        differ |= m->addr[i] != eth[i];
    return differ;
#else
    return ctx->pkt_type == PACKET_OTHERHOST;
#endif
}

static __always_inline void count_frame(MF_CTX *ctx)
{
    __u32 zero = 0;
    struct probe_config *cfg = config.lookup(&zero);
    if (!cfg)
        return;

    __u32 frame_len = MF_LEN(ctx);  // what MF_LOAD can read (offsets below are into it)
    count(C_FRAMES, 1);
    // Frame bytes as on the wire: a tag the stack took out of the frame still counts.
    count(C_FRAME_BYTES, frame_len + (MF_VLAN_OFFLOADED(ctx) ? 4 : 0));

    struct flow_key key = {};
    struct flow_val val = {};
    __u8 eth[14];
    if (MF_LOAD(ctx, 0, eth, sizeof(eth)) < 0) {
        count(C_TRUNCATED, 1);
        return;
    }
    if (other_host(ctx, eth))
        count(C_PROMISC_ONLY, 1);
    __builtin_memcpy(val.dst_mac, eth, 6);
    __builtin_memcpy(val.src_mac, eth + 6, 6);
    __u16 proto = ((__u16)eth[12] << 8) | eth[13];
    __u32 off = 14;
    int ntags = 0;

    if (MF_VLAN_OFFLOADED(ctx)) {
        key.vlan = MF_VLAN_TCI(ctx) & 0x0fff;
        ntags = 1;
    }
    if (parse_vlans(ctx, &off, &proto, &key, &val, &ntags) < 0)
        return;
    if (ntags)
        count(C_VLAN, 1);

    if (proto == ETH_P_PPP_SES) {
        // PPPoE session (RFC 2516): 6-byte header, then the 2-byte PPP protocol.
        __u8 pppoe[8];
        if (MF_LOAD(ctx, off, pppoe, sizeof(pppoe)) < 0) {
            count(C_TRUNCATED, 1);
            return;
        }
        __u16 ppp = ((__u16)pppoe[6] << 8) | pppoe[7];
        off += 8;
        proto = ppp == 0x0021 ? ETH_P_IP : ppp == 0x0057 ? ETH_P_IPV6 :
                ppp == 0x0281 ? ETH_P_MPLS_UC : 0;
    }

    __u8 ipver = 0;
    if (proto == ETH_P_IP) {
        ipver = 4;
    } else if (proto == ETH_P_IPV6) {
        ipver = 6;
    } else if ((proto == ETH_P_MPLS_UC || proto == ETH_P_MPLS_MC) && (cfg->features & FEAT_MPLS)) {
        __u8 depth = 0;
#pragma unroll
        for (int i = 0; i < MF_MAX_MPLS_LABELS; i++) {
            __u8 lse[4];
            if (MF_LOAD(ctx, off, lse, sizeof(lse)) < 0) {
                count(C_TRUNCATED, 1);
                return;
            }
            if (depth == 0)
                val.mpls_top = ((__u32)lse[0] << 24) | ((__u32)lse[1] << 16) | ((__u32)lse[2] << 8) | lse[3];
            depth++;
            off += 4;
            if (lse[2] & 1)
                break;
        }
        val.mpls_depth = depth;
        count(C_MPLS, 1);
        __u8 first;
        if (MF_LOAD(ctx, off, &first, 1) < 0) {
            count(C_TRUNCATED, 1);
            return;
        }
        if ((first >> 4) == 4) {
            ipver = 4;
        } else if ((first >> 4) == 6) {
            ipver = 6;
        } else if ((first >> 4) == 0) {
            // Ethernet pseudowire with a control word (RFC 4448): look at the inner frame.
            __u8 ieth[14];
            if (MF_LOAD(ctx, off + 4, ieth, sizeof(ieth)) < 0) {
                count(C_TRUNCATED, 1);
                return;
            }
            off += 4 + 14;
            proto = ((__u16)ieth[12] << 8) | ieth[13];
            if (parse_vlans(ctx, &off, &proto, &key, &val, &ntags) < 0)
                return;
            if (proto == ETH_P_IP)
                ipver = 4;
            else if (proto == ETH_P_IPV6)
                ipver = 6;
        }
    }
    if (!ipver) {
        count(C_NON_IP, 1);
        return;
    }

    __u64 ip_bytes = 0;
    __u8 l4proto = 0;
    __u8 ttl = 0;
    int ports = 1;
    __u32 l4off = 0;
    if (ipver == 4) {
        __u8 ip[20];
        if (MF_LOAD(ctx, off, ip, sizeof(ip)) < 0) {
            count(C_TRUNCATED, 1);
            return;
        }
        __u32 ihl = (ip[0] & 0x0f) * 4;
        key.tos = ip[1];
        ip_bytes = ((__u16)ip[2] << 8) | ip[3];
        if (ip_bytes == 0)  // TSO/GSO frames leave the total length at 0
            ip_bytes = frame_len > off ? frame_len - off : 0;
        __u16 frag = (((__u16)ip[6] << 8) | ip[7]);
        if (frag & 0x3fff) {
            val.frag = 1;
            count(C_FRAGMENTS, 1);
        }
        if (frag & 0x1fff)
            ports = 0;  // non-first fragment: no L4 header, counted without ports
        ttl = ip[8];
        l4proto = ip[9];
        __builtin_memcpy(key.src, ip + 12, 4);
        __builtin_memcpy(key.dst, ip + 16, 4);
        if (ihl < 20) {
            count(C_TRUNCATED, 1);
            ports = 0;
        }
        l4off = off + ihl;
    } else {
        __u8 ip6[40];
        if (MF_LOAD(ctx, off, ip6, sizeof(ip6)) < 0) {
            count(C_TRUNCATED, 1);
            return;
        }
        key.tos = (ip6[0] << 4) | (ip6[1] >> 4);
        val.flow_label = ((__u32)(ip6[1] & 0x0f) << 16) | ((__u32)ip6[2] << 8) | ip6[3];
        ip_bytes = (((__u16)ip6[4] << 8) | ip6[5]);
        if (ip_bytes == 0)  // jumbogram or GSO
            ip_bytes = frame_len > off + 40 ? frame_len - off - 40 : 0;
        ip_bytes += 40;
        __u8 nh = ip6[6];
        ttl = ip6[7];
        __builtin_memcpy(key.src, ip6 + 8, 16);
        __builtin_memcpy(key.dst, ip6 + 24, 16);
        __u32 hoff = off + 40;
#pragma unroll
        for (int i = 0; i < MF_MAX_IPV6_EXT; i++) {
            if (nh != 0 && nh != 43 && nh != 44 && nh != 60 && nh != 51)
                break;
            __u8 ext[8];
            if (MF_LOAD(ctx, hoff, ext, sizeof(ext)) < 0) {
                count(C_TRUNCATED, 1);
                ports = 0;
                break;
            }
            if (nh == 44) {
                val.frag = 1;
                count(C_FRAGMENTS, 1);
                if ((((__u16)ext[2] << 8) | ext[3]) & 0xfff8)
                    ports = 0;
                hoff += 8;
            } else if (nh == 51) {
                hoff += ((__u32)ext[1] + 2) * 4;
            } else {
                hoff += ((__u32)ext[1] + 1) * 8;
            }
            nh = ext[0];
        }
        l4proto = nh;
        l4off = hoff;
    }
    key.proto = l4proto;
    key.ipver = ipver;
    count(C_IP_PACKETS, 1);
    count(C_IP_BYTES, ip_bytes);

    __u8 tcp_flags = 0;
    if (ports) {
        if (l4proto == 6) {
            // Ports and flags are read apart: a tiny first fragment may carry only the ports.
            __u8 th[4];
            if (MF_LOAD(ctx, l4off, th, sizeof(th)) == 0) {
                key.sport = ((__u16)th[0] << 8) | th[1];
                key.dport = ((__u16)th[2] << 8) | th[3];
                if (MF_LOAD(ctx, l4off + 13, &tcp_flags, 1) < 0)
                    tcp_flags = 0;
            } else {
                count(C_TRUNCATED, 1);
            }
        } else if (l4proto == 17 || l4proto == 132 || l4proto == 136) {
            __u8 uh[4];
            if (MF_LOAD(ctx, l4off, uh, sizeof(uh)) == 0) {
                key.sport = ((__u16)uh[0] << 8) | uh[1];
                key.dport = ((__u16)uh[2] << 8) | uh[3];
            } else {
                count(C_TRUNCATED, 1);
            }
        } else if (l4proto == 1 || l4proto == 58) {
            __u8 ih[2];
            if (MF_LOAD(ctx, l4off, ih, sizeof(ih)) == 0)
                key.dport = ((__u16)ih[0] << 8) | ih[1];
            else
                count(C_TRUNCATED, 1);
        }
    }

    int maybe_self = 0;
    if (l4proto == 17) {
        __u32 nself = cfg->n_self_dports;
        if (nself > MF_MAX_SELF_PORTS) {
            maybe_self = 1;
        } else {
#pragma unroll
            for (int i = 0; i < MF_MAX_SELF_PORTS; i++)
                if (i < nself && cfg->self_dports[i] == key.dport)
                    maybe_self = 1;
        }
    }
    if (maybe_self) {
        struct self_key sk = {};
        __builtin_memcpy(sk.addr, key.dst, 16);
        sk.dport = key.dport;
        sk.ipver = ipver;
        sk.sport = key.sport;
        if (self_export.lookup(&sk)) {
            count(C_SELF_EXPORT, 1);
            return;
        }
        sk.sport = 0;
        if (self_export.lookup(&sk)) {
            count(C_SELF_EXPORT, 1);
            return;
        }
    }

    __u32 kf = cfg->key_fields;
    if (!(kf & KEY_PORTS)) { key.sport = 0; key.dport = 0; }
    if (!(kf & KEY_TOS)) key.tos = 0;
    if (!(kf & KEY_VLAN)) key.vlan = 0;
    if (kf & KEY_IFINDEX) key.ifindex = MF_IFINDEX(ctx);
    if (!(kf & KEY_SRC)) __builtin_memset(key.src, 0, 16);
    if (!(kf & KEY_DST)) __builtin_memset(key.dst, 0, 16);
    if (!(kf & KEY_PROTO)) key.proto = 0;

    __u32 n = cfg->sampler_n;
    if (cfg->sampler_mode != SAMPLER_OFF && n > 1) {
        int take = 0;
        if (cfg->sampler_mode == SAMPLER_DETERMINISTIC) {
            __u64 *st = sampler_state.lookup(&zero);
            if (st) {
                *st += 1;
                take = (*st % n) == 0;
            }
        } else if (cfg->sampler_mode == SAMPLER_RANDOM) {
            take = (bpf_get_prandom_u32() % n) == 0;
        } else {
            take = (key_hash(&key) % n) == 0;
        }
        if (!take) {
            count(C_SAMPLER_DISCARDED, 1);
            return;
        }
        count(C_SAMPLER_SELECTED, 1);
    }

    void *flows = active.lookup(&zero);
    if (!flows)
        return;
    __u64 now = bpf_ktime_get_ns();
    struct flow_val *v = bpf_map_lookup_elem(flows, &key);
    if (!v) {
        val.packets = 1;
        val.bytes = ip_bytes;
        val.first_ns = now;
        val.last_ns = now;
        val.tcp_flags = tcp_flags;
        val.min_ttl = ttl;
        val.max_ttl = ttl;
        if (!(cfg->features & FEAT_MACS)) {
            __builtin_memset(val.src_mac, 0, 6);
            __builtin_memset(val.dst_mac, 0, 6);
        }
        int ret = bpf_map_update_elem(flows, &key, &val, BPF_NOEXIST);
        if (ret == 0) {
            count(C_NEW_FLOWS, 1);
            count(C_ACCOUNTED_PACKETS, 1);
            count(C_ACCOUNTED_BYTES, ip_bytes);
            return;
        }
        // -EEXIST: another CPU won the insert; fall through and add to its entry.
        v = bpf_map_lookup_elem(flows, &key);
        if (!v) {
            count(C_REFUSED_PACKETS, 1);
            count(C_REFUSED_BYTES, ip_bytes);
            return;
        }
        count(C_INSERT_RACES, 1);
    }
    __sync_fetch_and_add(&v->packets, 1);
    __sync_fetch_and_add(&v->bytes, ip_bytes);
    if (tcp_flags)
        __sync_fetch_and_or(&v->tcp_flags, (__u64)tcp_flags);
    // first/last/TTL are not atomic: two CPUs racing on one flow may leave either value,
    // which is a timing detail, never a count.
    if (now > v->last_ns)
        v->last_ns = now;
    if (ttl < v->min_ttl)
        v->min_ttl = ttl;
    if (ttl > v->max_ttl)
        v->max_ttl = ttl;
    if (val.frag)
        v->frag = 1;
    count(C_ACCOUNTED_PACKETS, 1);
    count(C_ACCOUNTED_BYTES, ip_bytes);
}

#ifdef MF_XDP
int mf_xdp(struct xdp_md *ctx)
{
    count_frame(ctx);
    return XDP_PASS;
}
#else
int mf_ingress(struct __sk_buff *skb)
{
    count_frame(skb);
    return TC_ACT_OK;
}
#endif
