// Identity files, as Offset writes them:
//
//   {
//     "privateKey": "<base64url without padding of the 32-byte Ed25519 seed>"
//   }
//
// exactly that one field, no trailing newline. The public key is derived from the seed.
// Files are written 0600 (see secure_file.hpp) and refused on load when others may read them.
// Offset <= 0.1.10 stored an 85-byte PKCS#8 blob instead of the seed: such a file is refused
// with a message that says so, and is never truncated into a different key.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "common/keys.hpp"
#include "common/secure_file.hpp"

namespace strelay {

// The file's exact bytes (in wiped memory, since they hold the seed).
SecretText format_identity_file(const Identity& identity);

// Parses an identity file's text. `source` names it in messages ("relay/relay.ident: ...").
// On failure returns nullopt and sets `error` to one line that never contains the secret.
std::optional<Identity> try_parse_identity_file(std::string_view text, std::string_view source,
                                                std::string& error);
Identity parse_identity_file(std::string_view text, std::string_view source);  // FileError

// Loads with the secret-file rules: no symlink, owned by us, mode & 077 == 0, <= 4 KiB.
std::optional<Identity> try_load_identity(const std::filesystem::path& path, std::string& error);
Identity load_identity(const std::filesystem::path& path);  // throws FileError

// Writes atomically with mode 0600; refuses to replace an existing file unless asked to.
void write_identity(const std::filesystem::path& path, const Identity& identity,
                    Overwrite overwrite);

}  // namespace strelay
