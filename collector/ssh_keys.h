#pragma once
// RSA user keys with SHA-2 signatures (RFC 8332) for the SSH target.
//
// Why: libssh2 1.10 (Debian 12) signs RSA user authentication with "ssh-rsa" (SHA-1) only,
// which OpenSSH 8.8 and later refuse by default ("signature algorithm ssh-rsa not in
// PubkeyAcceptedAlgorithms"). So for an RSA key file the target signs itself, through
// libssh2_userauth_publickey() and a sign callback, as "rsa-sha2-512".
//
// libssh2 takes the algorithm name of the request from the key blob's type field, so the blob
// sent is the RSA public key with "rsa-sha2-512" as its type. OpenSSH (7.2 and later) decodes
// such a blob as an RSA key (sshkey_type_from_name() maps the signature algorithm names to
// KEY_RSA) and matches it against authorized_keys by its numbers, so this works with every
// OpenSSH that accepts rsa-sha2 at all. Other servers may refuse it: the target then falls back
// to libssh2's own "ssh-rsa" attempt.
//
// Thread-safety: a signer is immutable after Load(); Sign() may be called from any thread.

#include <memory>
#include <string>
#include <string_view>

#include "common/status.h"

struct evp_pkey_st;  // OpenSSL's EVP_PKEY

namespace trapline::ssh {

inline constexpr std::string_view kRsaSha2Algorithm = "rsa-sha2-512";

class RsaSha2Signer {
 public:
  // Loads a private key file: OpenSSH format ("BEGIN OPENSSH PRIVATE KEY", what ssh-keygen
  // writes) without a passphrase, or PEM (PKCS#1 "BEGIN RSA PRIVATE KEY" or PKCS#8), with or
  // without one. NotFound: the file holds another kind of key (ed25519...), for libssh2 to
  // use; InvalidArgument: an RSA key that cannot be used here (an OpenSSH-format key with a
  // passphrase: libssh2's "ssh-rsa" attempt is all that is left for it), or a broken file.
  static Result<std::unique_ptr<RsaSha2Signer>> Load(const std::string& path,
                                                     const std::string& passphrase);
  ~RsaSha2Signer();
  RsaSha2Signer(const RsaSha2Signer&) = delete;
  RsaSha2Signer& operator=(const RsaSha2Signer&) = delete;

  // The public key blob to send: string "rsa-sha2-512", mpint e, mpint n.
  const std::string& auth_blob() const { return blob_; }
  // The RSA PKCS#1 v1.5 SHA-512 signature of `data` (the bare signature; libssh2 wraps it in
  // string "rsa-sha2-512", string signature).
  Result<std::string> Sign(std::string_view data) const;

 private:
  RsaSha2Signer(evp_pkey_st* pkey, std::string blob) : pkey_(pkey), blob_(std::move(blob)) {}
  evp_pkey_st* pkey_;
  std::string blob_;
};

// ssh-agent keys: the same trick. The blob sent is the agent's "ssh-rsa" blob retyped, and the
// agent signs with SSH_AGENT_RSA_SHA2_512 (its protocol, over `agent_socket`, blocking: a
// local unix socket). Returns the bare signature.
std::string RsaSha2BlobFromSshRsa(std::string_view ssh_rsa_blob);  // "" if not ssh-rsa
Result<std::string> AgentSignRsaSha2(const std::string& agent_socket, std::string_view key_blob,
                                     std::string_view data);

// Pure parts, for tests.
// Standard base64 decoding; whitespace is skipped; false on anything else that is not base64.
bool Base64Decode(std::string_view text, std::string* out);
// An SSH mpint (two's complement, big-endian, minimal, with a 0 byte before a set top bit) of
// an unsigned big-endian number.
std::string Mpint(std::string_view unsigned_be);

}  // namespace trapline::ssh
