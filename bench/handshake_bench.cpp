// Handshakes (issue 6, measurement 3): the relay's completed handshakes per second of its own
// CPU time ("per core") under a flood from bench/handshake_load, next to the libsodium
// primitives a relay must run per handshake, timed in the same round:
//
//   responder crypto = X25519 keypair (e) + DH (ee) + Ed25519 sign (sig1)
//                      + Ed25519 verify (the node's sig1) + is_valid_point (the node's key)
//
// The load generator shares the machine's two cores with the relay, so the wall-clock rate is
// bounded by the generator; the relay's rate per CPU second is what the target is about.
// Each round runs the generator twice: with one node identity throughout (the relay has found
// its key valid before and skips the point check: the figure with the target) and with a new
// identity for every handshake (a flood of new keys, each checked).
//
// A join (issue 17.3) is one such full handshake with Listen and its ListenOk: the relay's CPU
// per join in ms has the target 0.25. With --reference-bin, a second relay built from another
// tree (e.g. main's build/bin) is measured in every round too, right after this one, with the
// same load: the ratio of the two is the before/after that the machine's load cannot skew.
//
//   handshake_bench --bin DIR [--rounds 5] [--seconds 3] [--clients 64] [--reference-bin DIR]
#include <sodium.h>
#include <time.h>

#include <array>
#include <functional>

#include "bench/harness.hpp"

using namespace bench;

namespace {

double thread_cpu_now() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// Microseconds of thread CPU per call of `op`, over about `seconds` of CPU.
double cost_us(const std::function<void()>& op, double seconds) {
  const double start = thread_cpu_now();
  std::size_t calls = 0;
  double now = start;
  while (now - start < seconds) {
    for (int i = 0; i < 16; ++i) op();
    calls += 16;
    now = thread_cpu_now();
  }
  return 1e6 * (now - start) / static_cast<double>(calls);
}

struct Primitives {
  double keypair, dh, sign, verify, point;
  double responder() const { return keypair + dh + sign + verify + point; }
};

Primitives measure_primitives(double seconds) {
  std::array<std::uint8_t, 32> secret{}, pub{}, peer{}, shared{};
  randombytes_buf(secret.data(), secret.size());
  crypto_scalarmult_base(peer.data(), secret.data());
  std::array<std::uint8_t, 73> message{};
  randombytes_buf(message.data(), message.size());
  std::array<std::uint8_t, crypto_sign_SECRETKEYBYTES> sk{};
  std::array<std::uint8_t, crypto_sign_PUBLICKEYBYTES> pk{};
  std::array<std::uint8_t, crypto_sign_BYTES> sig{};
  crypto_sign_keypair(pk.data(), sk.data());
  crypto_sign_detached(sig.data(), nullptr, message.data(), message.size(), sk.data());
  volatile int sink = 0;
  Primitives p{};
  p.keypair = cost_us(
      [&] {
        randombytes_buf(secret.data(), secret.size());
        sink = sink + crypto_scalarmult_base(pub.data(), secret.data());
      },
      seconds);
  p.dh = cost_us(
      [&] { sink = sink + crypto_scalarmult(shared.data(), secret.data(), peer.data()); }, seconds);
  p.sign = cost_us(
      [&] {
        sink = sink +
               crypto_sign_detached(sig.data(), nullptr, message.data(), message.size(), sk.data());
      },
      seconds);
  p.verify = cost_us(
      [&] {
        sink = sink +
               crypto_sign_verify_detached(sig.data(), message.data(), message.size(), pk.data());
      },
      seconds);
  p.point = cost_us([&] { sink = sink + crypto_core_ed25519_is_valid_point(pk.data()); }, seconds);
  return p;
}

}  // namespace

int main(int argc, char** argv) {
  const Flags flags(argc, argv, {"bin", "clients", "reference-bin", "rounds", "seconds"});
  strelay::init_crypto();
  const int rounds = static_cast<int>(flags.count("rounds", 5));
  const double seconds = flags.num("seconds", 3);
  const long clients = flags.count("clients", 64);
  const fs::path bin = flags.str("bin", "build/bin");
  const auto dir = scratch_dir("handshake");
  const std::string reference_bin = flags.str("reference-bin", "");
  auto relay = start_relay(bin, dir);
  std::optional<RelayUnderTest> reference;
  if (!reference_bin.empty()) reference.emplace(start_relay(reference_bin, dir / "reference"));

  Figure per_cpu("handshake.relay_per_cpu_second", "relay handshakes per CPU second (per core)",
                 "1/s");
  Figure wall("handshake.wall_per_second", "handshakes per second, wall clock (generator-bound)",
              "1/s");
  Figure crypto_bound("handshake.crypto_bound",
                      "responder crypto alone: 1 / (keypair+DH+sign+verify+point)", "1/s");
  Figure ratio("handshake.relay_vs_crypto", "relay rate per CPU second / crypto-alone rate",
               "ratio");
  Figure relay_us("handshake.relay_cpu_us", "relay CPU per handshake", "us");
  Figure join_ms("handshake.relay_cpu_per_join_ms",
                 "relay CPU per authenticated join (handshake, Listen, ListenOk)", "ms");
  join_ms.target = 0.25;
  Figure reference_join_ms("handshake.reference.relay_cpu_per_join_ms",
                           "reference relay (--reference-bin): CPU per join", "ms");
  Figure join_ratio("handshake.join_cpu_vs_reference",
                    "relay CPU per join / the reference's, same round", "ratio");
  Figure fresh_per_cpu("handshake.fresh.relay_per_cpu_second",
                       "relay handshakes per CPU second, a new node identity for each", "1/s");
  Figure fresh_us("handshake.fresh.relay_cpu_us",
                  "relay CPU per handshake, a new node identity for each", "us");
  std::map<std::string, Figure> prims;
  for (const std::string name : {"keypair", "dh", "sign", "verify", "point"}) {
    prims.emplace(name, Figure("handshake.primitive." + name, "libsodium " + name, "us"));
  }
  per_cpu.target = 5000;
  per_cpu.target_is_max = false;
  long failed_total = 0;
  // One run of handshake_load (with `extra` flags): its result and the relay's CPU seconds.
  auto run_load = [&](const std::string& name, std::vector<std::string> extra,
                      RelayUnderTest& target) {
    const auto out = dir / (name + ".json");
    const double cpu0 = target.process.cpu_seconds();
    {
      std::vector<std::string> args{(bin / "handshake_load").string(),
                                    "127.0.0.1",
                                    std::to_string(target.endpoint.port()),
                                    target.key.to_base64url(),
                                    "--clients",
                                    std::to_string(clients),
                                    "--seconds",
                                    std::to_string(seconds)};
      args.insert(args.end(), extra.begin(), extra.end());
      Child load(args, out);
      // handshake_load stops itself after --seconds; a stuck one is killed 30 s later.
      load.wait_exit(std::chrono::milliseconds(static_cast<long>(seconds * 1000) + 30000));
    }
    const double cpu = target.process.cpu_seconds() - cpu0;
    const auto text = read_file(out);
    const auto brace = text.rfind('{');
    if (brace == std::string::npos) die("handshake_load printed no result: " + text);
    auto result = json::parse(text.substr(brace));
    failed_total += result["failed"].get<long>();
    return std::make_pair(result, cpu);
  };
  for (int r = 0; r < rounds; ++r) {
    const auto p = measure_primitives(0.1);
    const auto [result, cpu] = run_load("load-" + std::to_string(r), {}, relay);
    const double done = result["handshakes"].get<double>();
    join_ms.values.push_back(1e3 * cpu / done);
    if (reference) {
      const auto [ref_result, ref_cpu] = run_load("reference-" + std::to_string(r), {}, *reference);
      const double ref_ms = 1e3 * ref_cpu / ref_result["handshakes"].get<double>();
      reference_join_ms.values.push_back(ref_ms);
      join_ratio.values.push_back(join_ms.values.back() / ref_ms);
    }
    const auto [fresh_result, fresh_cpu] =
        run_load("fresh-" + std::to_string(r), {"--fresh-identities"}, relay);
    const double fresh_done = fresh_result["handshakes"].get<double>();
    fresh_per_cpu.values.push_back(fresh_done / fresh_cpu);
    fresh_us.values.push_back(1e6 * fresh_cpu / fresh_done);
    per_cpu.values.push_back(done / cpu);
    wall.values.push_back(result["per_second"].get<double>());
    crypto_bound.values.push_back(1e6 / p.responder());
    ratio.values.push_back((done / cpu) / (1e6 / p.responder()));
    relay_us.values.push_back(1e6 * cpu / done);
    prims.at("keypair").values.push_back(p.keypair);
    prims.at("dh").values.push_back(p.dh);
    prims.at("sign").values.push_back(p.sign);
    prims.at("verify").values.push_back(p.verify);
    prims.at("point").values.push_back(p.point);
    std::fprintf(stderr,
                 "handshake round %d: %.0f handshakes, relay %.0f /CPU s, crypto bound %.0f /s; "
                 "new identities: relay %.0f /CPU s\n",
                 r + 1, done, done / cpu, 1e6 / p.responder(), fresh_done / fresh_cpu);
  }
  std::vector<Figure> figures{join_ms, per_cpu,  wall,          crypto_bound,
                              ratio,   relay_us, fresh_per_cpu, fresh_us};
  if (reference) {
    figures.push_back(reference_join_ms);
    figures.push_back(join_ratio);
  }
  for (auto& [name, f] : prims) figures.push_back(f);
  json params{{"rounds", rounds},
              {"seconds", seconds},
              {"clients", clients},
              {"reference_bin", reference_bin},
              {"failed_handshakes", failed_total}};
  std::printf("%s\n", report("handshake", params, figures).dump(1).c_str());
  fs::remove_all(dir);
  return 0;
}
