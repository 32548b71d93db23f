// Writing and reading the project's files safely.
//
// Writes are atomic: a temporary file in the target's directory (O_EXCL, O_NOFOLLOW), written,
// fsync'd, then moved into place and the directory fsync'd, so a crash leaves either the old
// file or the new one. Without Overwrite::replace an existing file is never touched (link(2)
// or renameat2 RENAME_NOREPLACE); with it, only a regular file is replaced (a symlink, device,
// FIFO, socket or directory at the path is refused, so --force never swaps /dev/null). Secret files
// get mode 0600 whatever the umask, and the directories created for them 0700.
//
// Reads are bounded (the size is checked on fstat before reading) and only from regular files.
// Secret reads refuse, as ssh does, a symlink, a file owned by another user (root excepted), and a
// file that group or others may access. Every refusal is a one-line message that starts with the
// path.
#pragma once

#include <sodium.h>

#include <cstddef>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace strelay {

// A bad file, or a file that cannot be read or written: the message is one line, and starts
// with the file's path ("relay/relay.ident: permissions 0644 are too open; ...").
class FileError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// An allocator that wipes memory before freeing it, for buffers that may hold secret text
// (a whole identity file, its base64url seed). Short strings held inline by std::basic_string
// (SSO) are not covered; the secrets we hold are longer than the inline buffer.
template <class T>
struct WipingAllocator {
  using value_type = T;
  WipingAllocator() noexcept = default;
  template <class U>
  WipingAllocator(const WipingAllocator<U>&) noexcept {}  // NOLINT: rebinding is implicit
  T* allocate(std::size_t n) { return std::allocator<T>{}.allocate(n); }
  void deallocate(T* p, std::size_t n) noexcept {
    sodium_memzero(p, n * sizeof(T));
    std::allocator<T>{}.deallocate(p, n);
  }
  template <class U>
  friend bool operator==(const WipingAllocator&, const WipingAllocator<U>&) noexcept {
    return true;
  }
};

// Text that is wiped when freed.
using SecretText = std::basic_string<char, std::char_traits<char>, WipingAllocator<char>>;

enum class Overwrite { refuse, replace };      // replace is stmgr's --force
enum class FileSecrecy { secret, shareable };  // secret: 0600 file, 0700 new directories

// Writes `contents` to `path` atomically (see the top of this file). On failure nothing is
// left behind (the temporary file is unlinked) and the existing file, if any, is unchanged.
void write_file_atomic(const std::filesystem::path& path, std::string_view contents,
                       FileSecrecy secrecy, Overwrite overwrite);
bool try_write_file_atomic(const std::filesystem::path& path, std::string_view contents,
                           FileSecrecy secrecy, Overwrite overwrite, std::string& error);

// Reads a whole regular file of at most max_bytes. With FileSecrecy::secret the file must also
// be a regular file itself (not a symlink), owned by the effective user (any owner for root),
// and mode & 077 == 0.
SecretText read_file_bounded(const std::filesystem::path& path, std::size_t max_bytes,
                             FileSecrecy secrecy);
std::optional<SecretText> try_read_file_bounded(const std::filesystem::path& path,
                                                std::size_t max_bytes, FileSecrecy secrecy,
                                                std::string& error);

}  // namespace strelay
