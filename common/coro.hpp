// Coroutine plumbing shared by every Asio driver: expected outcomes come back as tuples, and an
// exception escaping a detached coroutine is a bug that must reach io_context::run().
#pragma once

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <exception>

namespace strelay {

// co_await op(await_tuple) yields (error_code, results...) instead of throwing on EOF, timeouts
// and cancellation, which are ordinary outcomes (style rule 14).
inline constexpr auto await_tuple = boost::asio::as_tuple(boost::asio::use_awaitable);

// The completion handler of a detached co_spawn: rethrows what the coroutine threw.
inline void rethrow(std::exception_ptr error) {
  if (error) std::rethrow_exception(error);
}

}  // namespace strelay
