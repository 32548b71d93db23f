// Test support: connected TCP socket pairs on 127.0.0.1, and small coroutine helpers.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

namespace strelay::test {

using tcp = boost::asio::ip::tcp;

// A connected pair (client side, server side) on 127.0.0.1, both on `ioc`.
std::pair<tcp::socket, tcp::socket> loopback_pair(boost::asio::io_context& ioc);

// Deterministic pseudo-random bytes.
std::vector<std::uint8_t> pattern_bytes(std::size_t n, std::uint64_t seed);

// Runs `ioc` until it has no more work, or fails the test after `limit`.
void run_for(boost::asio::io_context& ioc, std::chrono::milliseconds limit);

}  // namespace strelay::test
