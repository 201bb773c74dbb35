//! libcgroups statistics in containerd's metrics types, which is what
//! `ctr task metrics` and `docker stats` decode.

use std::collections::HashMap;

use containerd_shim_protos::cgroups::metrics as v1m;
use containerd_shim_protos::cgroups_v2::metrics as v2m;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use libcgroups::stats::{BlkioDeviceStat, Stats};

use crate::error::{Error, Result};

/// The type URLs containerd's Go runc shim uses for the same messages.
const V1_TYPE_URL: &str = "io.containerd.cgroups.v1.Metrics";
const V2_TYPE_URL: &str = "io.containerd.cgroups.v2.Metrics";

fn pack(type_url: &str, message: &dyn containerd_shim_protos::protobuf::MessageDyn) -> Result<Any> {
    let value = message
        .write_to_bytes_dyn()
        .map_err(|e| Error::Other(format!("encode metrics: {e}")))?;
    Ok(Any {
        type_url: type_url.to_string(),
        value,
        ..Default::default()
    })
}

fn stat(stats: &HashMap<String, u64>, key: &str) -> u64 {
    stats.get(key).copied().unwrap_or_default()
}

pub fn v1(s: &Stats) -> Result<Any> {
    let mut m = v1m::Metrics::new();

    let mut pids = v1m::PidsStat::new();
    pids.current = s.pids.current;
    pids.limit = s.pids.limit;
    m.pids = Some(pids).into();

    let mut usage = v1m::CPUUsage::new();
    usage.total = s.cpu.usage.usage_total;
    usage.user = s.cpu.usage.usage_user;
    usage.kernel = s.cpu.usage.usage_kernel;
    usage.per_cpu = s.cpu.usage.per_core_usage_total.clone();
    let mut throttling = v1m::Throttle::new();
    throttling.periods = s.cpu.throttling.periods;
    throttling.throttled_periods = s.cpu.throttling.throttled_periods;
    throttling.throttled_time = s.cpu.throttling.throttled_time;
    let mut cpu = v1m::CPUStat::new();
    cpu.usage = Some(usage).into();
    cpu.throttling = Some(throttling).into();
    m.cpu = Some(cpu).into();

    m.memory = Some(v1_memory(s)).into();
    m.blkio = Some(v1_blkio(s)).into();

    pack(V1_TYPE_URL, &m)
}

/// cgroup v1's memory controller as containerd's v1 metrics name it.
fn v1_memory(s: &Stats) -> v1m::MemoryStat {
    let entry = |d: &libcgroups::stats::MemoryData| {
        let mut e = v1m::MemoryEntry::new();
        e.usage = d.usage;
        e.max = d.max_usage;
        e.failcnt = d.fail_count;
        e.limit = d.limit;
        e
    };
    let st = &s.memory.stats;
    let mut mem = v1m::MemoryStat::new();
    mem.usage = Some(entry(&s.memory.memory)).into();
    mem.swap = Some(entry(&s.memory.memswap)).into();
    mem.kernel = Some(entry(&s.memory.kernel)).into();
    mem.kernel_tcp = Some(entry(&s.memory.kernel_tcp)).into();
    mem.cache = stat(st, "cache");
    mem.rss = stat(st, "rss");
    mem.rss_huge = stat(st, "rss_huge");
    mem.mapped_file = stat(st, "mapped_file");
    mem.dirty = stat(st, "dirty");
    mem.writeback = stat(st, "writeback");
    mem.pg_pg_in = stat(st, "pgpgin");
    mem.pg_pg_out = stat(st, "pgpgout");
    mem.pg_fault = stat(st, "pgfault");
    mem.pg_maj_fault = stat(st, "pgmajfault");
    mem.inactive_anon = stat(st, "inactive_anon");
    mem.active_anon = stat(st, "active_anon");
    mem.inactive_file = stat(st, "inactive_file");
    mem.active_file = stat(st, "active_file");
    mem.unevictable = stat(st, "unevictable");
    mem.hierarchical_memory_limit = stat(st, "hierarchical_memory_limit");
    mem.hierarchical_swap_limit = stat(st, "hierarchical_memsw_limit");
    mem.total_cache = stat(st, "total_cache");
    mem.total_rss = stat(st, "total_rss");
    mem.total_rss_huge = stat(st, "total_rss_huge");
    mem.total_mapped_file = stat(st, "total_mapped_file");
    mem.total_dirty = stat(st, "total_dirty");
    mem.total_writeback = stat(st, "total_writeback");
    mem.total_pg_pg_in = stat(st, "total_pgpgin");
    mem.total_pg_pg_out = stat(st, "total_pgpgout");
    mem.total_pg_fault = stat(st, "total_pgfault");
    mem.total_pg_maj_fault = stat(st, "total_pgmajfault");
    mem.total_inactive_anon = stat(st, "total_inactive_anon");
    mem.total_active_anon = stat(st, "total_active_anon");
    mem.total_inactive_file = stat(st, "total_inactive_file");
    mem.total_active_file = stat(st, "total_active_file");
    mem.total_unevictable = stat(st, "total_unevictable");
    mem
}

/// cgroup v1's blkio controller as containerd's v1 metrics name it.
fn v1_blkio(s: &Stats) -> v1m::BlkIOStat {
    let entries = |list: &[BlkioDeviceStat]| -> Vec<v1m::BlkIOEntry> {
        list.iter()
            .map(|d| {
                let mut e = v1m::BlkIOEntry::new();
                e.major = d.major;
                e.minor = d.minor;
                e.op = d.op_type.clone().unwrap_or_default();
                e.value = d.value;
                e
            })
            .collect()
    };
    let mut blkio = v1m::BlkIOStat::new();
    blkio.io_service_bytes_recursive = entries(&s.blkio.service_bytes);
    blkio.io_serviced_recursive = entries(&s.blkio.serviced);
    blkio.io_queued_recursive = entries(&s.blkio.queued);
    blkio.io_service_time_recursive = entries(&s.blkio.service_time);
    blkio.io_wait_time_recursive = entries(&s.blkio.wait_time);
    blkio.io_merged_recursive = entries(&s.blkio.merged);
    blkio.io_time_recursive = entries(&s.blkio.time);
    blkio.sectors_recursive = entries(&s.blkio.sectors);
    blkio
}

pub fn v2(s: &Stats) -> Result<Any> {
    let mut m = v2m::Metrics::new();

    let mut pids = v2m::PidsStat::new();
    pids.current = s.pids.current;
    pids.limit = s.pids.limit;
    m.pids = Some(pids).into();

    // On v2, libcgroups keeps cpu.stat's microseconds as they are.
    let mut cpu = v2m::CPUStat::new();
    cpu.usage_usec = s.cpu.usage.usage_total;
    cpu.user_usec = s.cpu.usage.usage_user;
    cpu.system_usec = s.cpu.usage.usage_kernel;
    cpu.nr_periods = s.cpu.throttling.periods;
    cpu.nr_throttled = s.cpu.throttling.throttled_periods;
    cpu.throttled_usec = s.cpu.throttling.throttled_time;
    m.cpu = Some(cpu).into();

    let st = &s.memory.stats;
    let mut mem = v2m::MemoryStat::new();
    mem.anon = stat(st, "anon");
    mem.file = stat(st, "file");
    mem.kernel_stack = stat(st, "kernel_stack");
    mem.slab = stat(st, "slab");
    mem.sock = stat(st, "sock");
    mem.shmem = stat(st, "shmem");
    mem.file_mapped = stat(st, "file_mapped");
    mem.file_dirty = stat(st, "file_dirty");
    mem.inactive_anon = stat(st, "inactive_anon");
    mem.active_anon = stat(st, "active_anon");
    mem.inactive_file = stat(st, "inactive_file");
    mem.active_file = stat(st, "active_file");
    mem.unevictable = stat(st, "unevictable");
    mem.pgfault = stat(st, "pgfault");
    mem.pgmajfault = stat(st, "pgmajfault");
    mem.usage = s.memory.memory.usage;
    mem.usage_limit = s.memory.memory.limit;
    mem.swap_usage = s.memory.memswap.usage;
    mem.swap_limit = s.memory.memswap.limit;
    m.memory = Some(mem).into();

    pack(V2_TYPE_URL, &m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use containerd_shim_protos::protobuf::Message;

    #[test]
    fn v1_metrics_carry_memory_cpu_and_pids() {
        let mut s = Stats::default();
        s.memory.memory.usage = 4096;
        s.memory.memory.limit = 1 << 30;
        s.memory.stats.insert("total_inactive_file".into(), 7);
        s.cpu.usage.usage_total = 123;
        s.pids.current = 3;
        let any = v1(&s).unwrap();
        assert_eq!(any.type_url, V1_TYPE_URL);
        let m = v1m::Metrics::parse_from_bytes(&any.value).unwrap();
        assert_eq!(m.memory.usage.usage, 4096);
        assert_eq!(m.memory.usage.limit, 1 << 30);
        assert_eq!(m.memory.total_inactive_file, 7);
        assert_eq!(m.cpu.usage.total, 123);
        assert_eq!(m.pids.current, 3);
    }

    #[test]
    fn v2_metrics_keep_cpu_microseconds() {
        let mut s = Stats::default();
        s.cpu.usage.usage_total = 5000;
        s.memory.memory.usage = 8192;
        let any = v2(&s).unwrap();
        assert_eq!(any.type_url, V2_TYPE_URL);
        let m = v2m::Metrics::parse_from_bytes(&any.value).unwrap();
        assert_eq!(m.cpu.usage_usec, 5000);
        assert_eq!(m.memory.usage, 8192);
    }
}
