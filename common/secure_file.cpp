#include "common/secure_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <system_error>
#include <utility>

namespace strelay {

namespace {

constexpr mode_t secret_file_mode = 0600;
constexpr mode_t shareable_file_mode = 0644;
constexpr mode_t secret_dir_mode = 0700;
constexpr mode_t shareable_dir_mode = 0755;  // then narrowed by the umask, as mkdir(1) does

std::string os_error(int e) {
  return std::generic_category().message(e);
}

std::string octal_mode(mode_t mode) {
  char text[8];
  std::snprintf(text, sizeof text, "%04o", static_cast<unsigned>(mode & 07777));
  return text;
}

// Closes on destruction; close errors matter only after writing, where we check them.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

// Unlinks the temporary file unless the write committed, so no failure leaves it behind.
class TempFile {
 public:
  explicit TempFile(std::string path) : path_(std::move(path)) {}
  ~TempFile() {
    if (!path_.empty()) ::unlink(path_.c_str());
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  const std::string& path() const { return path_; }
  void commit() { path_.clear(); }

 private:
  std::string path_;
};

// mkdir -p; each directory we create gets `mode`, and for secrets the mode is set with chmod
// so that an unusual umask can neither widen nor narrow it.
bool make_directories(const std::filesystem::path& dir, FileSecrecy secrecy, std::string& error) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) return true;
    error = dir.string() + ": is not a directory";
    return false;
  }
  if (errno != ENOENT) {
    error = dir.string() + ": " + os_error(errno);
    return false;
  }
  const auto parent = dir.parent_path();
  if (!parent.empty() && parent != dir && !make_directories(parent, secrecy, error)) return false;
  const mode_t mode = secrecy == FileSecrecy::secret ? secret_dir_mode : shareable_dir_mode;
  if (::mkdir(dir.c_str(), mode) != 0) {
    if (errno == EEXIST) return true;  // created meanwhile (or "a/.."): fine
    error = dir.string() + ": cannot create directory: " + os_error(errno);
    return false;
  }
  if (secrecy == FileSecrecy::secret && ::chmod(dir.c_str(), mode) != 0) {
    error = dir.string() + ": cannot set mode " + octal_mode(mode) + ": " + os_error(errno);
    return false;
  }
  return true;
}

std::string temp_name_for(const std::filesystem::path& path) {
  unsigned char random[8];
  randombytes_buf(random, sizeof random);
  static constexpr char hex[] = "0123456789abcdef";
  std::string suffix;
  for (const unsigned char b : random) {
    suffix += hex[b >> 4];
    suffix += hex[b & 0xf];
  }
  return (path.parent_path() / ("." + path.filename().string() + "." + suffix + ".tmp")).string();
}

bool write_all(int fd, std::string_view contents) {
  while (!contents.empty()) {
    const ssize_t n = ::write(fd, contents.data(), contents.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    contents.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

// What stands at `path` when it is not a regular file ("a symbolic link", "a device", ...),
// or empty when it is a regular file or nothing.
std::string special_file_kind(const std::filesystem::path& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0 || S_ISREG(st.st_mode)) return {};
  if (S_ISLNK(st.st_mode)) return "a symbolic link";
  if (S_ISDIR(st.st_mode)) return "a directory";
  if (S_ISFIFO(st.st_mode)) return "a FIFO";
  if (S_ISSOCK(st.st_mode)) return "a socket";
  if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) return "a device";
  return "not a regular file";
}

// Moves the finished temporary file into place; never clobbers unless asked to, and never
// anything but a regular file (--force on /dev/null must not turn it into a key file).
bool move_into_place(const std::string& temp, const std::filesystem::path& path,
                     Overwrite overwrite, std::string& error) {
  if (const auto kind = special_file_kind(path); !kind.empty()) {
    error = path.string() + ": is " + kind + "; only a regular file is ever replaced";
    return false;
  }
  int result = 0;
  if (overwrite == Overwrite::replace) {
    result = ::rename(temp.c_str(), path.c_str());
  } else {
    result = ::renameat2(AT_FDCWD, temp.c_str(), AT_FDCWD, path.c_str(), RENAME_NOREPLACE);
    if (result != 0 && (errno == EINVAL || errno == ENOSYS)) {
      // A file system without RENAME_NOREPLACE: link(2) fails on an existing name as well.
      result = ::link(temp.c_str(), path.c_str());
      if (result == 0) ::unlink(temp.c_str());  // the new name holds the file now
    }
  }
  if (result == 0) return true;
  error = errno == EEXIST
              ? path.string() + ": already exists; refusing to overwrite it (--force replaces it)"
              : path.string() + ": cannot write: " + os_error(errno);
  return false;
}

// Makes the new directory entry durable. File systems that cannot fsync a directory say
// EINVAL; there is nothing more to do on those.
bool sync_directory(const std::filesystem::path& dir, std::string& error) {
  Fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() < 0 || (::fsync(fd.get()) != 0 && errno != EINVAL)) {
    error = dir.string() + ": cannot sync directory: " + os_error(errno);
    return false;
  }
  return true;
}

bool check_secret_file(const std::filesystem::path& path, const struct stat& st,
                       std::string& error) {
  // Root may use a private file of another user (the packaged service's identity, owned by
  // the strelay user): root can read it anyway, and refusing only sends operators to chmod.
  // The mode rule below still holds for root.
  if (st.st_uid != ::geteuid() && ::geteuid() != 0) {
    error = path.string() + ": owned by uid " + std::to_string(st.st_uid) +
            ", not by the current user (uid " + std::to_string(::geteuid()) +
            "); a private key file must belong to the user who uses it";
    return false;
  }
  if ((st.st_mode & 077) != 0) {
    error = path.string() + ": permissions " + octal_mode(st.st_mode) +
            " are too open; a private key file must not be accessible by others (chmod 600 " +
            path.string() + ")";
    return false;
  }
  return true;
}

}  // namespace

bool try_write_file_atomic(const std::filesystem::path& path, std::string_view contents,
                           FileSecrecy secrecy, Overwrite overwrite, std::string& error) {
  if (path.empty() || !path.has_filename()) {
    error = "'" + path.string() + "': not a file name";
    return false;
  }
  const std::filesystem::path dir = path.has_parent_path() ? path.parent_path() : ".";
  if (!make_directories(dir, secrecy, error)) return false;

  TempFile temp(temp_name_for(path));
  Fd fd(::open(temp.path().c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
               secret_file_mode));
  if (fd.get() < 0) {
    temp.commit();  // it is not ours: never unlink a file we did not create
    error = path.string() + ": cannot create a temporary file in " + dir.string() + ": " +
            os_error(errno);
    return false;
  }
  // The umask only narrows open()'s mode; fchmod sets exactly what we want.
  const mode_t mode = secrecy == FileSecrecy::secret ? secret_file_mode : shareable_file_mode;
  if (::fchmod(fd.get(), mode) != 0 || !write_all(fd.get(), contents) || ::fsync(fd.get()) != 0 ||
      ::close(fd.release()) != 0) {
    error = path.string() + ": cannot write: " + os_error(errno);
    return false;
  }
  if (!move_into_place(temp.path(), path, overwrite, error)) return false;
  temp.commit();
  return sync_directory(dir, error);
}

void write_file_atomic(const std::filesystem::path& path, std::string_view contents,
                       FileSecrecy secrecy, Overwrite overwrite) {
  std::string error;
  if (!try_write_file_atomic(path, contents, secrecy, overwrite, error)) throw FileError(error);
}

std::optional<SecretText> try_read_file_bounded(const std::filesystem::path& path,
                                                std::size_t max_bytes, FileSecrecy secrecy,
                                                std::string& error) {
  // O_NONBLOCK: opening a FIFO must not hang; O_NOFOLLOW: a key file is never a symlink.
  int flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
  if (secrecy == FileSecrecy::secret) flags |= O_NOFOLLOW;
  Fd fd(::open(path.c_str(), flags));
  if (fd.get() < 0) {
    error = errno == ELOOP && secrecy == FileSecrecy::secret
                ? path.string() +
                      ": is a symbolic link; a private key file must be a regular "
                      "file (symlinks are refused)"
                : path.string() + ": " + os_error(errno);
    return std::nullopt;
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) {
    error = path.string() + ": " + os_error(errno);
    return std::nullopt;
  }
  if (!S_ISREG(st.st_mode)) {
    error = path.string() + ": is not a regular file";
    return std::nullopt;
  }
  if (secrecy == FileSecrecy::secret && !check_secret_file(path, st, error)) return std::nullopt;
  const auto too_big = [&](std::uintmax_t size) {
    error = path.string() + ": is " + std::to_string(size) + " bytes, more than the " +
            std::to_string(max_bytes) + " bytes such a file may have";
    return std::nullopt;
  };
  if (static_cast<std::uintmax_t>(st.st_size) > max_bytes) {
    return too_big(static_cast<std::uintmax_t>(st.st_size));
  }
  // One byte more than allowed is read, to notice a file that grew after fstat.
  SecretText text(max_bytes + 1, '\0');
  std::size_t total = 0;
  while (total < text.size()) {
    const ssize_t n = ::read(fd.get(), text.data() + total, text.size() - total);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      error = path.string() + ": " + os_error(errno);
      return std::nullopt;
    }
    if (n == 0) break;
    total += static_cast<std::size_t>(n);
  }
  if (total > max_bytes) return too_big(total);
  text.resize(total);
  return text;
}

SecretText read_file_bounded(const std::filesystem::path& path, std::size_t max_bytes,
                             FileSecrecy secrecy) {
  std::string error;
  auto text = try_read_file_bounded(path, max_bytes, secrecy, error);
  if (!text) throw FileError(error);
  return std::move(*text);
}

}  // namespace strelay
