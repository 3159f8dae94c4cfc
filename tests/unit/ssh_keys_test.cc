// rsa-sha2-512 signing for RSA user keys (collector/ssh_keys.h), with keys made by the local
// ssh-keygen in the formats users have: OpenSSH (its default), PEM with a passphrase.

#include <doctest/doctest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>

#include "collector/ssh_keys.h"
#include "collector/ssh_wire.h"

namespace trapline::ssh {
namespace {

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string Run(const std::string& cmd) {
  FILE* f = popen(cmd.c_str(), "r");
  REQUIRE(f != nullptr);
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  REQUIRE_MESSAGE(pclose(f) == 0, cmd);
  return out;
}

struct TempDir {
  TempDir() {
    char t[] = "/tmp/trapline-keys-test-XXXXXX";
    REQUIRE(mkdtemp(t) != nullptr);
    path = t;
  }
  ~TempDir() { (void)system(("rm -rf " + ShellQuote(path)).c_str()); }
  std::string path;
};

// The "ssh-rsa" blob of a .pub file.
std::string PubBlob(const std::string& pub_path) {
  std::istringstream in(Slurp(pub_path));
  std::string type, b64, blob;
  in >> type >> b64;
  REQUIRE(Base64Decode(b64, &blob));
  return blob;
}

// Verifies an rsa-sha2-512 signature with the public key ssh-keygen exports as PKCS#8 PEM.
bool Verify(const std::string& pub_path, const std::string& data, const std::string& sig) {
  std::string pem = Run("ssh-keygen -e -m PKCS8 -f " + ShellQuote(pub_path));
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  EVP_PKEY* pkey = PEM_read_bio_PUBKEY(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  REQUIRE(pkey != nullptr);
  EVP_MD_CTX* md = EVP_MD_CTX_new();
  bool ok = EVP_DigestVerifyInit(md, nullptr, EVP_sha512(), nullptr, pkey) == 1 &&
            EVP_DigestVerify(md, reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
                             reinterpret_cast<const unsigned char*>(data.data()),
                             data.size()) == 1;
  EVP_MD_CTX_free(md);
  EVP_PKEY_free(pkey);
  return ok;
}

TEST_CASE("base64 decoding and mpints") {
  std::string out;
  REQUIRE(Base64Decode("Zm9v\nYmFy", &out));
  CHECK(out == "foobar");
  REQUIRE(Base64Decode("Zm9vYg==", &out));
  CHECK(out == "foob");
  CHECK_FALSE(Base64Decode("Zm9v!", &out));
  CHECK_FALSE(Base64Decode("Zg==Zg", &out));
  CHECK(Mpint(std::string("\x00\x00\x01", 3)) == std::string("\x01", 1));
  CHECK(Mpint(std::string("\x80\x01", 2)) == std::string("\x00\x80\x01", 3));
  CHECK(Mpint(std::string("\x7f", 1)) == std::string("\x7f", 1));
  CHECK(Mpint("") == "");
}

TEST_CASE("an ssh-rsa blob retyped as rsa-sha2-512") {
  std::string blob = std::string("\0\0\0\7ssh-rsa", 11) + std::string("\0\0\0\1\3", 5);
  CHECK(RsaSha2BlobFromSshRsa(blob) ==
        std::string("\0\0\0\14rsa-sha2-512", 16) + std::string("\0\0\0\1\3", 5));
  CHECK(RsaSha2BlobFromSshRsa(std::string("\0\0\0\13ssh-ed25519", 15)).empty());
  CHECK(RsaSha2BlobFromSshRsa("xx").empty());
}

TEST_CASE("RSA keys sign rsa-sha2-512 that the public key verifies: OpenSSH and PEM formats") {
  TempDir dir;
  struct Case {
    const char* name;
    const char* keygen_args;
    const char* passphrase;
  } cases[] = {{"openssh", "-t rsa -b 2048", ""}, {"pem", "-t rsa -b 2048 -m PEM", "pass word"}};
  for (const Case& k : cases) {
    CAPTURE(k.name);
    std::string key = dir.path + "/" + k.name;
    Run(std::string("ssh-keygen -q ") + k.keygen_args + " -N " + ShellQuote(k.passphrase) +
        " -f " + ShellQuote(key));
    auto signer = RsaSha2Signer::Load(key, k.passphrase);
    REQUIRE_MESSAGE(signer.ok(), signer.status().message());
    // The blob is the .pub key's, retyped.
    CHECK((*signer)->auth_blob() == RsaSha2BlobFromSshRsa(PubBlob(key + ".pub")));
    std::string data = "session id and userauth request";
    auto sig = (*signer)->Sign(data);
    REQUIRE(sig.ok());
    CHECK(sig->size() == 256);
    CHECK(Verify(key + ".pub", data, *sig));
    CHECK_FALSE(Verify(key + ".pub", data + "x", *sig));
  }
}

TEST_CASE("keys the signer does not take") {
  TempDir dir;
  std::string ed = dir.path + "/ed";
  Run("ssh-keygen -q -t ed25519 -N '' -f " + ShellQuote(ed));
  auto r = RsaSha2Signer::Load(ed, "");
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == StatusCode::kNotFound);  // libssh2 signs ed25519 itself

  std::string enc = dir.path + "/enc";
  Run("ssh-keygen -q -t rsa -b 2048 -N secret -f " + ShellQuote(enc));
  r = RsaSha2Signer::Load(enc, "secret");
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == StatusCode::kInvalidArgument);
  CHECK(r.status().message().find("ssh-keygen -p -m PEM") != std::string::npos);

  std::string pem = dir.path + "/pem";
  Run("ssh-keygen -q -t rsa -b 2048 -m PEM -N secret -f " + ShellQuote(pem));
  r = RsaSha2Signer::Load(pem, "wrong");
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().message().find("wrong passphrase?") != std::string::npos);

  r = RsaSha2Signer::Load(dir.path + "/missing", "");
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == StatusCode::kInvalidArgument);

  std::string junk = dir.path + "/junk";
  std::ofstream(junk) << "not a key\n";
  r = RsaSha2Signer::Load(junk, "");
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == StatusCode::kNotFound);
}

}  // namespace
}  // namespace trapline::ssh
