// hnswlib compiled from source with the host's full instruction set, as the strongest peer of
// Atelier.Vectors in bench/vectors.sh. Reads a data file from bench/Atelier.Vectors.Bench/gen_data.py,
// builds an index on two threads, sweeps ef and prints the JSON that run_hnswlib.py prints (the Python
// peer), so report.py reads both.
//
//   hnswlib_bench <data.bin> <M> <efConstruction> <ef,ef,...> <l2|ip>
//
// Written against hnswlib's public header API only (HierarchicalNSW, L2Space, InnerProductSpace,
// addPoint, searchKnn, setEf, saveIndex); the headers come from Debian's libhnswlib-dev. Build:
//   g++ -O3 -march=native -std=c++17 -pthread -I/usr/include hnswlib_bench.cpp -o hnswlib_bench
#include <hnswlib/hnswlib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

struct Data {
    int n = 0, nq = 0, dim = 0, kgt = 0;
    std::vector<float> base, queries;
    std::vector<int32_t> truth;
};

[[noreturn]] void fail(const std::string& what) {
    std::fprintf(stderr, "hnswlib_bench: %s\n", what.c_str());
    std::exit(2);
}

// Layout (little endian): int32 n, nq, dim, kgt; float32 base[n*dim]; float32 queries[nq*dim]; int32 gt[nq*kgt].
Data load(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) fail("cannot open data file '" + path + "'");
    Data d;
    int32_t header[4];
    if (!in.read(reinterpret_cast<char*>(header), sizeof header)) fail("'" + path + "' has no header");
    d.n = header[0]; d.nq = header[1]; d.dim = header[2]; d.kgt = header[3];
    if (d.n <= 0 || d.nq <= 0 || d.dim <= 0 || d.kgt < 10) fail("'" + path + "' has a bad header");
    d.base.resize(size_t(d.n) * d.dim);
    d.queries.resize(size_t(d.nq) * d.dim);
    d.truth.resize(size_t(d.nq) * d.kgt);
    if (!in.read(reinterpret_cast<char*>(d.base.data()), std::streamsize(d.base.size() * sizeof(float))) ||
        !in.read(reinterpret_cast<char*>(d.queries.data()), std::streamsize(d.queries.size() * sizeof(float))) ||
        !in.read(reinterpret_cast<char*>(d.truth.data()), std::streamsize(d.truth.size() * sizeof(int32_t))))
        fail("'" + path + "' ends before its header says");
    return d;
}

std::vector<int> parse_list(const std::string& s) {
    std::vector<int> out;
    std::stringstream ss(s);
    std::string item;
    while (std::getline(ss, item, ',')) out.push_back(std::stoi(item));
    return out;
}

// Runs fn(i) for i in [0, count) on `threads` threads sharing one counter (as the C# harness does).
template <class Fn>
void parallel_for(int count, int threads, Fn fn) {
    std::atomic<int> next{0};
    std::vector<std::thread> workers;
    for (int t = 0; t < threads; t++)
        workers.emplace_back([&] {
            for (int i; (i = next.fetch_add(1)) < count;) fn(i);
        });
    for (auto& w : workers) w.join();
}

double seconds_since(Clock::time_point start) {
    return std::chrono::duration<double>(Clock::now() - start).count();
}

double percentile(std::vector<double> sorted, double p) {
    std::sort(sorted.begin(), sorted.end());
    return sorted[std::min(sorted.size() - 1, size_t(p * double(sorted.size())))];
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 6) fail("usage: hnswlib_bench <data.bin> <M> <efConstruction> <ef,ef,...> <l2|ip>");
    const std::string path = argv[1], metric = argv[5];
    const int m = std::atoi(argv[2]), efc = std::atoi(argv[3]);
    const std::vector<int> efs = parse_list(argv[4]);
    const int k = 10;
    if (metric != "l2" && metric != "ip") fail("metric must be l2 or ip, not '" + metric + "'");

    Data d = load(path);
    std::unique_ptr<hnswlib::SpaceInterface<float>> space;
    if (metric == "l2") space = std::make_unique<hnswlib::L2Space>(d.dim);
    else space = std::make_unique<hnswlib::InnerProductSpace>(d.dim);
    hnswlib::HierarchicalNSW<float> index(space.get(), size_t(d.n), size_t(m), size_t(efc), 100);

    auto start = Clock::now();
    parallel_for(d.n, 2, [&](int i) { index.addPoint(d.base.data() + size_t(i) * d.dim, hnswlib::labeltype(i)); });
    const double build = seconds_since(start);
    std::fprintf(stderr, "hnswlib-native: built %d x %d in %.1f s\n", d.n, d.dim, build);

    char tmpl[] = "/tmp/hnswlib-native-XXXXXX";
    int fd = mkstemp(tmpl);
    if (fd < 0) fail("cannot create a temporary file for the saved index");
    close(fd);
    index.saveIndex(tmpl);
    std::ifstream saved(tmpl, std::ios::binary | std::ios::ate);
    const double bytes_per_vector = double(saved.tellg()) / d.n;
    std::remove(tmpl);

    auto query = [&](int q) { return d.queries.data() + size_t(q) * d.dim; };
    std::vector<std::string> rows;
    for (int ef : efs) {
        index.setEf(size_t(ef));
        for (int q = 0; q < std::min(d.nq, 200); q++) index.searchKnn(query(q), k);  // warm-up

        // Throughput is the best of three passes, on one thread and on two, as for the other engines.
        std::vector<std::vector<hnswlib::labeltype>> found(size_t(d.nq));
        double qps1 = 0, qps2 = 0;
        for (int pass = 0; pass < 3; pass++) {
            start = Clock::now();
            for (int q = 0; q < d.nq; q++) {
                auto result = index.searchKnn(query(q), k);
                auto& ids = found[size_t(q)];
                ids.clear();
                for (; !result.empty(); result.pop()) ids.push_back(result.top().second);
            }
            qps1 = std::max(qps1, d.nq / seconds_since(start));
        }
        for (int pass = 0; pass < 3; pass++) {
            start = Clock::now();
            parallel_for(d.nq, 2, [&](int q) { index.searchKnn(query(q), k); });
            qps2 = std::max(qps2, d.nq / seconds_since(start));
        }
        std::vector<double> latency(size_t(d.nq));
        for (int q = 0; q < d.nq; q++) {
            auto s = Clock::now();
            index.searchKnn(query(q), k);
            latency[size_t(q)] = seconds_since(s) * 1e6;
        }

        long hits = 0;
        for (int q = 0; q < d.nq; q++) {
            const int32_t* truth = d.truth.data() + size_t(q) * d.kgt;
            for (auto id : found[size_t(q)])
                hits += std::count(truth, truth + k, int32_t(id)) > 0;
        }
        const double recall = double(hits) / (double(d.nq) * k);
        const double p50 = percentile(latency, 0.50), p99 = percentile(latency, 0.99);
        std::fprintf(stderr, "hnswlib-native ef=%d recall=%.4f qps1=%.0f qps2=%.0f p50=%.0fus p99=%.0fus\n", ef, recall, qps1, qps2, p50, p99);
        char row[256];
        std::snprintf(row, sizeof row, "{\"ef\": %d, \"recall\": %.6f, \"qps1\": %.3f, \"qps2\": %.3f, \"p50_us\": %.3f, \"p99_us\": %.3f}",
                      ef, recall, qps1, qps2, p50, p99);
        rows.emplace_back(row);
    }

    std::printf("{\"engine\": \"hnswlib 0.6.2 C++ (g++ -O3 -march=native)\", \"n\": %d, \"dim\": %d, \"M\": %d, \"efConstruction\": %d, "
                "\"metric\": \"%s\", \"build_s\": %.3f, \"bytes_per_vector\": %.1f, \"rows\": [",
                d.n, d.dim, m, efc, metric.c_str(), build, bytes_per_vector);
    for (size_t i = 0; i < rows.size(); i++) std::printf("%s%s", i ? ", " : "", rows[i].c_str());
    std::printf("]}\n");
    return 0;
}
