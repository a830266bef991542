// jemalloc's options, read from this symbol when the allocator starts (the
// MALLOC_CONF environment variable still applies on top). Linked into
// applianced only with jemalloc (appliance/daemon/BUILD.bazel).
//
// narenas:1 — one arena for every thread. A node's buffers cross threads: the
// interconnect thread allocates a proxied read's data (gRPC's socket and TLS
// slices, the decoded completion) and the iSCSI loop frees it once sent; with
// jemalloc's default arena per group of threads the freed extents sat dirty in
// one arena, were purged to the kernel and every large transfer faulted fresh
// pages back in (~70 minor faults per proxied 1 MiB read on the receiving
// node). One arena reuses them: proxied 1 MiB reads 370 -> 634 MB/s, direct
// 2398 -> 3361 MB/s, 4 KiB random reads unchanged (bench/pair_proxy_bench.sh).
extern "C" {
extern const char* malloc_conf;
const char* malloc_conf = "narenas:1";
}
