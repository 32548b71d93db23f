#include "support/relay_state_fixture.hpp"

#include <algorithm>
#include <array>

namespace strelay::test::pairing {

const std::vector<PublicKey>& keys() {
  static const std::vector<PublicKey> all = [] {
    std::vector<PublicKey> out;
    for (std::uint8_t i = 0; i < 8; ++i) {
      std::array<std::uint8_t, key_bytes> seed{};
      seed.fill(static_cast<std::uint8_t>(i + 1));
      out.push_back(Identity::from_seed(seed).public_key());
    }
    return out;
  }();
  return all;
}
const PublicKey& key(char name) {
  return keys().at(static_cast<std::size_t>(name - 'A'));
}

PublicKey random_key(std::mt19937_64& rng) {
  std::array<std::uint8_t, key_bytes> raw{};
  for (auto& b : raw) b = static_cast<std::uint8_t>(rng());
  return PublicKey(raw);  // the table never checks points: decode already did
}

// ---------------------------------------------------------------- readable actions

std::string name(const PublicKey& k) {
  const auto& all = keys();
  const auto it = std::find(all.begin(), all.end(), k);
  return it == all.end() ? "?" : std::string(1, static_cast<char>('A' + (it - all.begin())));
}

std::string describe(const RelayMessage& m) {
  if (std::holds_alternative<ListenOk>(m)) return "ListenOk";
  if (const auto* x = std::get_if<IncomingConnection>(&m)) return "Incoming{" + name(x->from) + "}";
  if (const auto* x = std::get_if<Connected>(&m)) return "Connected{" + name(x->peer) + "}";
  return std::string("Refused{") + to_string(std::get<Refused>(m).reason) + "}";
}

std::string describe(const Action& a) {
  if (const auto* x = std::get_if<SendTo>(&a)) {
    return "send " + std::to_string(x->to) + " " + describe(x->message);
  }
  if (const auto* x = std::get_if<CloseConn>(&a)) {
    return "close " + std::to_string(x->conn) + " reason " +
           std::to_string(static_cast<int>(x->reason));
  }
  const auto& p = std::get<Paired>(a);
  return "paired " + std::to_string(p.connector) + "<-" + std::to_string(p.acceptor) + " " +
         name(p.connector_key) + "->" + name(p.listener_key);
}

std::string describe(const Actions& actions) {
  std::string out;
  for (const auto& a : actions) out += (out.empty() ? "" : "; ") + describe(a);
  return out.empty() ? "(none)" : out;
}

// ---------------------------------------------------------------- expected actions

Actions none() {
  return {};
}
Actions listen_ok(ConnId c) {
  return {SendTo{c, ListenOk{}}};
}
Actions incoming(ConnId listener, char from) {
  return {SendTo{listener, IncomingConnection{key(from)}}};
}
Actions refused(ConnId c, RefuseReason r) {
  return {SendTo{c, Refused{r}}, CloseConn{c, close_reason_for(r)}};
}
Actions closed(ConnId c, CloseReason r) {
  return {CloseConn{c, r}};
}
Actions paired(ConnId connector, ConnId acceptor, char from, char listener) {
  return {Paired{connector, acceptor, key(from), key(listener)}};
}
Allowlist allow_only(std::initializer_list<PublicKey> members) {
  Allowlist list;
  for (const auto& k : members) list.add(k);
  return list;
}

Actions operator+(Actions a, const Actions& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

}  // namespace strelay::test::pairing
