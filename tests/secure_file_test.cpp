// Tests for common/secure_file: atomic, non-clobbering writes with exact modes, and the ssh-like
// rules for loading secret files.
#include "common/secure_file.hpp"

#include <doctest/doctest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

using namespace strelay;
namespace fs = std::filesystem;

namespace {

// A fresh directory under /tmp, removed with everything in it at the end of the test.
struct TempDir {
  fs::path path;
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "secure_file_test.XXXXXX").string();
    REQUIRE(::mkdtemp(pattern.data()) != nullptr);
    path = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path, ignored);
  }
  fs::path operator/(const char* name) const { return path / name; }
};

// Sets the umask for one test and restores it after.
struct ScopedUmask {
  mode_t old;
  explicit ScopedUmask(mode_t mask) : old(::umask(mask)) {}
  ~ScopedUmask() { ::umask(old); }
};

mode_t mode_of(const fs::path& p) {
  struct stat st {};
  REQUIRE(::lstat(p.c_str(), &st) == 0);
  return st.st_mode & 07777;
}

std::string contents_of(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void put(const fs::path& p, const std::string& text, mode_t mode) {
  std::ofstream(p, std::ios::binary) << text;
  REQUIRE(::chmod(p.c_str(), mode) == 0);
}

std::size_t entries_in(const fs::path& dir) {
  return static_cast<std::size_t>(std::distance(fs::directory_iterator(dir), {}));
}

std::string read_error(const fs::path& p, std::size_t max, FileSecrecy secrecy) {
  std::string error;
  CHECK_FALSE(try_read_file_bounded(p, max, secrecy, error).has_value());
  CHECK(error.find('\n') == std::string::npos);
  CHECK(error.rfind(p.string(), 0) == 0);  // every message starts with the path
  return error;
}

bool contains(const std::string& text, std::string_view part) {
  return text.find(part) != std::string::npos;
}

}  // namespace

TEST_CASE("a secret file is 0600 and its new directories 0700 even under umask 000") {
  TempDir tmp;
  const ScopedUmask mask(0);
  const fs::path file = tmp.path / "new" / "deeper" / "relay.ident";
  write_file_atomic(file, "secret", FileSecrecy::secret, Overwrite::refuse);
  CHECK(contents_of(file) == "secret");
  CHECK(mode_of(file) == 0600);
  CHECK(mode_of(tmp.path / "new") == 0700);
  CHECK(mode_of(tmp.path / "new" / "deeper") == 0700);
}

TEST_CASE("a secret file's directories are 0700 even under umask 0777") {
  TempDir tmp;
  const ScopedUmask mask(0777);
  const fs::path file = tmp.path / "d" / "x.ident";
  write_file_atomic(file, "s", FileSecrecy::secret, Overwrite::refuse);
  CHECK(mode_of(tmp.path / "d") == 0700);
  CHECK(mode_of(file) == 0600);
}

TEST_CASE("a shareable file is exactly 0644 whatever the umask") {
  TempDir tmp;
  {
    const ScopedUmask mask(0);
    write_file_atomic(tmp / "a.relay", "t", FileSecrecy::shareable, Overwrite::refuse);
  }
  {
    const ScopedUmask mask(077);
    write_file_atomic(tmp / "b.relay", "t", FileSecrecy::shareable, Overwrite::refuse);
  }
  CHECK(mode_of(tmp / "a.relay") == 0644);
  CHECK(mode_of(tmp / "b.relay") == 0644);
}

TEST_CASE("an existing file is never overwritten without Overwrite::replace") {
  TempDir tmp;
  const fs::path file = tmp / "relay.ident";
  put(file, "old", 0600);
  std::string error;
  CHECK_FALSE(try_write_file_atomic(file, "new", FileSecrecy::secret, Overwrite::refuse, error));
  CHECK(error ==
        file.string() + ": already exists; refusing to overwrite it (--force replaces it)");
  CHECK(contents_of(file) == "old");
  CHECK(entries_in(tmp.path) == 1);  // no temporary file left behind
  CHECK_THROWS_AS(write_file_atomic(file, "new", FileSecrecy::secret, Overwrite::refuse),
                  FileError);

  write_file_atomic(file, "new", FileSecrecy::secret, Overwrite::replace);
  CHECK(contents_of(file) == "new");
  CHECK(entries_in(tmp.path) == 1);
}

TEST_CASE("replacing a file gives it the new mode, not the old one") {
  TempDir tmp;
  const fs::path file = tmp / "relay.ident";
  put(file, "old", 0644);
  write_file_atomic(file, "new", FileSecrecy::secret, Overwrite::replace);
  CHECK(mode_of(file) == 0600);
}

TEST_CASE("a symlink or a FIFO at the target is never followed nor replaced, even with --force") {
  TempDir tmp;
  const fs::path victim = tmp / "victim";
  put(victim, "precious", 0644);
  const fs::path link = tmp / "link.ident";
  fs::create_symlink(victim, link);
  REQUIRE(::mkfifo((tmp / "fifo").c_str(), 0600) == 0);
  for (const auto overwrite : {Overwrite::refuse, Overwrite::replace}) {
    std::string error;
    CHECK_FALSE(try_write_file_atomic(link, "x", FileSecrecy::secret, overwrite, error));
    CHECK(error == link.string() + ": is a symbolic link; only a regular file is ever replaced");
    CHECK_FALSE(try_write_file_atomic(tmp / "fifo", "x", FileSecrecy::secret, overwrite, error));
    CHECK(error == (tmp / "fifo").string() + ": is a FIFO; only a regular file is ever replaced");
  }
  CHECK(fs::is_symlink(link));
  CHECK(fs::is_fifo(tmp / "fifo"));
  CHECK(contents_of(victim) == "precious");
  CHECK(entries_in(tmp.path) == 3);  // no temporary file left behind
}

TEST_CASE("only an existing regular file gets the --force hint") {
  TempDir tmp;
  put(tmp / "plain", "x", 0644);
  std::string error;
  CHECK_FALSE(
      try_write_file_atomic(tmp / "plain", "y", FileSecrecy::secret, Overwrite::refuse, error));
  CHECK(error == (tmp / "plain").string() +
                     ": already exists; refusing to overwrite it (--force replaces it)");
}

TEST_CASE("a write that cannot happen leaves nothing behind and says why in one line") {
  TempDir tmp;
  put(tmp / "plain", "x", 0644);
  std::string error;
  CHECK_FALSE(try_write_file_atomic(tmp / "plain" / "x.ident", "s", FileSecrecy::secret,
                                    Overwrite::refuse, error));
  CHECK(contains(error, "is not a directory"));
  fs::create_directory(tmp / "dir");
  CHECK_FALSE(
      try_write_file_atomic(tmp / "dir", "s", FileSecrecy::secret, Overwrite::replace, error));
  CHECK(contains(error, "is a directory; only a regular file is ever replaced"));
  CHECK(entries_in(tmp.path) == 2);
  CHECK(entries_in(tmp / "dir") == 0);
  CHECK_FALSE(try_write_file_atomic("", "s", FileSecrecy::secret, Overwrite::refuse, error));
}

TEST_CASE("a private 0600 file of our own loads") {
  TempDir tmp;
  put(tmp / "k", "key", 0600);
  CHECK(read_file_bounded(tmp / "k", 100, FileSecrecy::secret) == "key");
  put(tmp / "r", "ro", 0400);
  CHECK(read_file_bounded(tmp / "r", 100, FileSecrecy::secret) == "ro");
}

TEST_CASE("a secret file that group or others may access is refused, as ssh does") {
  TempDir tmp;
  const fs::path key = tmp / "relay.ident";
  for (const mode_t mode : {0644u, 0640u, 0604u, 0660u, 0602u, 0610u, 0601u}) {
    CAPTURE(mode);
    put(key, "key", mode);
    const std::string error = read_error(key, 100, FileSecrecy::secret);
    char expected[16];
    std::snprintf(expected, sizeof expected, "%04o", static_cast<unsigned>(mode));
    CHECK(error == key.string() + ": permissions " + expected +
                       " are too open; a private key file must not be accessible by others "
                       "(chmod 600 " +
                       key.string() + ")");
  }
  // A ticket is public: the same file loads as a shareable file.
  CHECK(read_file_bounded(key, 100, FileSecrecy::shareable) == "key");
}

TEST_CASE("a symlinked secret file is refused, even when it points at a private file") {
  TempDir tmp;
  put(tmp / "real", "key", 0600);
  fs::create_symlink(tmp / "real", tmp / "link");
  CHECK(contains(read_error(tmp / "link", 100, FileSecrecy::secret), "is a symbolic link"));
  CHECK(read_file_bounded(tmp / "link", 100, FileSecrecy::shareable) == "key");
}

TEST_CASE("a secret file of another user: refused, but root may read a private one") {
  if (::geteuid() != 0) return;  // only root can give a file away
  TempDir tmp;
  put(tmp / "k", "key", 0600);
  REQUIRE(::chown((tmp / "k").c_str(), 65534, 65534) == 0);
  // Root uses the packaged service's identity (owned by the strelay user) as it is.
  CHECK(read_file_bounded(tmp / "k", 100, FileSecrecy::secret) == "key");
  // The mode rule holds for root too.
  REQUIRE(::chmod((tmp / "k").c_str(), 0640) == 0);
  CHECK(contains(read_error(tmp / "k", 100, FileSecrecy::secret), "permissions 0640 are too open"));
  // Any other user is refused a file it does not own (0644 here, so open() itself succeeds).
  REQUIRE(::chmod((tmp / "k").c_str(), 0644) == 0);
  REQUIRE(::chmod(tmp.path.c_str(), 0755) == 0);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    std::string error;
    const bool refused = ::setresuid(65533, 65533, 65533) == 0 &&
                         !try_read_file_bounded(tmp / "k", 100, FileSecrecy::secret, error) &&
                         contains(error, "owned by uid 65534, not by the current user (uid 65533)");
    ::_exit(refused ? 0 : 1);
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  CHECK((WIFEXITED(status) && WEXITSTATUS(status) == 0));
}

TEST_CASE("directories, FIFOs and missing files are refused without blocking") {
  TempDir tmp;
  fs::create_directory(tmp / "dir");
  REQUIRE(::mkfifo((tmp / "fifo").c_str(), 0600) == 0);
  for (const auto secrecy : {FileSecrecy::secret, FileSecrecy::shareable}) {
    CHECK(contains(read_error(tmp / "dir", 100, secrecy), "is not a regular file"));
    CHECK(contains(read_error(tmp / "fifo", 100, secrecy), "is not a regular file"));
    CHECK(contains(read_error(tmp / "missing", 100, secrecy), "No such file or directory"));
  }
  CHECK(contains(read_error("/dev/zero", 100, FileSecrecy::shareable), "not a regular file"));
}

TEST_CASE("a file of max_bytes loads and one of max_bytes + 1 is refused before reading") {
  TempDir tmp;
  put(tmp / "max", std::string(4096, 'a'), 0600);
  put(tmp / "over", std::string(4097, 'a'), 0600);
  CHECK(read_file_bounded(tmp / "max", 4096, FileSecrecy::secret).size() == 4096);
  CHECK(read_error(tmp / "over", 4096, FileSecrecy::secret) ==
        (tmp / "over").string() + ": is 4097 bytes, more than the 4096 bytes such a file may have");
  CHECK_THROWS_AS(read_file_bounded(tmp / "over", 4096, FileSecrecy::secret), FileError);
}
