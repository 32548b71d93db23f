#include "support/loopback.hpp"

#include <doctest/doctest.h>

#include <random>

namespace strelay::test {

std::pair<tcp::socket, tcp::socket> loopback_pair(boost::asio::io_context& ioc) {
  tcp::acceptor acceptor(ioc, tcp::endpoint(boost::asio::ip::address_v4::loopback(), 0));
  tcp::socket client(ioc);
  client.connect(acceptor.local_endpoint());
  tcp::socket server = acceptor.accept();
  client.set_option(tcp::no_delay(true));
  server.set_option(tcp::no_delay(true));
  return {std::move(client), std::move(server)};
}

std::vector<std::uint8_t> pattern_bytes(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::uint8_t> out(n);
  for (auto& b : out) b = static_cast<std::uint8_t>(rng());
  return out;
}

void run_for(boost::asio::io_context& ioc, std::chrono::milliseconds limit) {
  ioc.restart();
  ioc.run_for(limit);
  REQUIRE_MESSAGE(ioc.stopped(), "the test's io_context still had work after its time limit");
}

}  // namespace strelay::test
