#include "collector/ssh_keys.h"
#include "collector/ssh_wire.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

namespace trapline::ssh {

namespace {

constexpr std::string_view kOpensshBegin = "-----BEGIN OPENSSH PRIVATE KEY-----";
constexpr std::string_view kOpensshEnd = "-----END OPENSSH PRIVATE KEY-----";

using Reader = WireReader;

std::string AuthBlob(std::string_view e_mpint, std::string_view n_mpint) {
  std::string blob;
  PutString(&blob, kRsaSha2Algorithm);
  PutString(&blob, e_mpint);
  PutString(&blob, n_mpint);
  return blob;
}

std::string OpensslError() {
  unsigned long e = ERR_get_error();
  if (e == 0) return "unknown OpenSSL error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  ERR_clear_error();
  return buf;
}

struct BnDeleter {
  void operator()(BIGNUM* b) const { BN_clear_free(b); }
};
using Bn = std::unique_ptr<BIGNUM, BnDeleter>;

Bn BnFrom(std::string_view be) {
  return Bn(BN_bin2bn(reinterpret_cast<const unsigned char*>(be.data()),
                      static_cast<int>(be.size()), nullptr));
}

std::string BnBytes(const BIGNUM* b) {
  std::string out(static_cast<size_t>(BN_num_bytes(b)), '\0');
  BN_bn2bin(b, reinterpret_cast<unsigned char*>(out.data()));
  return out;
}

// An RSA EVP_PKEY from n, e, d, p, q, iqmp (what an OpenSSH private key holds).
Result<EVP_PKEY*> RsaFromParts(std::string_view n, std::string_view e, std::string_view d,
                               std::string_view iqmp, std::string_view p, std::string_view q) {
  Bn bn_n = BnFrom(n), bn_e = BnFrom(e), bn_d = BnFrom(d), bn_p = BnFrom(p), bn_q = BnFrom(q),
     bn_iqmp = BnFrom(iqmp);
  Bn dmp1(BN_new()), dmq1(BN_new()), p1(BN_new()), q1(BN_new());
  std::unique_ptr<BN_CTX, void (*)(BN_CTX*)> ctx(BN_CTX_new(), BN_CTX_free);
  if (!bn_n || !bn_e || !bn_d || !bn_p || !bn_q || !bn_iqmp || !dmp1 || !dmq1 || !p1 || !q1 ||
      !ctx || !BN_sub(p1.get(), bn_p.get(), BN_value_one()) ||
      !BN_sub(q1.get(), bn_q.get(), BN_value_one()) ||
      !BN_mod(dmp1.get(), bn_d.get(), p1.get(), ctx.get()) ||
      !BN_mod(dmq1.get(), bn_d.get(), q1.get(), ctx.get())) {
    return Status::Internal("RSA key arithmetic: " + OpensslError());
  }
  std::unique_ptr<OSSL_PARAM_BLD, void (*)(OSSL_PARAM_BLD*)> bld(OSSL_PARAM_BLD_new(),
                                                                 OSSL_PARAM_BLD_free);
  if (!bld || !OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, bn_n.get()) ||
      !OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, bn_e.get()) ||
      !OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_D, bn_d.get()) ||
      !OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_FACTOR1, bn_p.get()) ||
      !OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_FACTOR2, bn_q.get()) ||
      !OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_EXPONENT1, dmp1.get()) ||
      !OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_EXPONENT2, dmq1.get()) ||
      !OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_COEFFICIENT1, bn_iqmp.get())) {
    return Status::Internal("RSA key parameters: " + OpensslError());
  }
  std::unique_ptr<OSSL_PARAM, void (*)(OSSL_PARAM*)> params(OSSL_PARAM_BLD_to_param(bld.get()),
                                                            OSSL_PARAM_free);
  std::unique_ptr<EVP_PKEY_CTX, void (*)(EVP_PKEY_CTX*)> pctx(
      EVP_PKEY_CTX_new_from_name(nullptr, "RSA", nullptr), EVP_PKEY_CTX_free);
  EVP_PKEY* pkey = nullptr;
  if (!params || !pctx || EVP_PKEY_fromdata_init(pctx.get()) <= 0 ||
      EVP_PKEY_fromdata(pctx.get(), &pkey, EVP_PKEY_KEYPAIR, params.get()) <= 0) {
    return Status::Internal("RSA key: " + OpensslError());
  }
  return pkey;
}

}  // namespace

bool Base64Decode(std::string_view text, std::string* out) {
  out->clear();
  uint32_t acc = 0;
  int bits = 0;
  size_t pad = 0;
  for (char c : text) {
    int v;
    if (c >= 'A' && c <= 'Z') {
      v = c - 'A';
    } else if (c >= 'a' && c <= 'z') {
      v = c - 'a' + 26;
    } else if (c >= '0' && c <= '9') {
      v = c - '0' + 52;
    } else if (c == '+') {
      v = 62;
    } else if (c == '/') {
      v = 63;
    } else if (c == '=') {
      ++pad;
      continue;
    } else if (c == ' ' || c == '\n' || c == '\r' || c == '\t') {
      continue;
    } else {
      return false;
    }
    if (pad > 0) return false;  // data after padding
    acc = acc << 6 | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out->push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  return pad <= 2;
}

std::string Mpint(std::string_view be) {
  size_t i = 0;
  while (i < be.size() && be[i] == '\0') ++i;
  std::string out;
  if (i < be.size() && (static_cast<unsigned char>(be[i]) & 0x80) != 0) out.push_back('\0');
  out.append(be.substr(i));
  return out;
}

std::string RsaSha2BlobFromSshRsa(std::string_view blob) {
  Reader r(blob);
  std::string_view type;
  if (!r.String(&type) || type != "ssh-rsa") return {};
  std::string out;
  PutString(&out, kRsaSha2Algorithm);
  out.append(blob.substr(4 + type.size()));
  return out;
}

Result<std::string> AgentSignRsaSha2(const std::string& agent_socket, std::string_view key_blob,
                                     std::string_view data) {
  constexpr uint8_t kSignRequest = 13, kSignResponse = 14;
  constexpr uint32_t kRsaSha2_512 = 4;  // SSH_AGENT_RSA_SHA2_512
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (agent_socket.empty() || agent_socket.size() >= sizeof addr.sun_path) {
    return Status::InvalidArgument("ssh-agent socket path \"" + agent_socket + "\" unusable");
  }
  std::memcpy(addr.sun_path, agent_socket.data(), agent_socket.size());
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::IoError(std::string("socket: ") + std::strerror(errno));
  std::unique_ptr<int, void (*)(int*)> guard(&fd, [](int* f) { ::close(*f); });
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    return Status::Unavailable("ssh-agent " + agent_socket + ": " + std::strerror(errno));
  }
  std::string body(1, static_cast<char>(kSignRequest));
  PutString(&body, key_blob);
  PutString(&body, data);
  body.append({0, 0, 0, static_cast<char>(kRsaSha2_512)});
  std::string msg;
  PutString(&msg, body);
  for (size_t off = 0; off < msg.size();) {
    ssize_t n = ::send(fd, msg.data() + off, msg.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Status::IoError(std::string("ssh-agent write: ") + std::strerror(errno));
    off += static_cast<size_t>(n);
  }
  auto read_exact = [fd](char* p, size_t len) {
    for (size_t off = 0; off < len;) {
      ssize_t n = ::read(fd, p + off, len - off);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      off += static_cast<size_t>(n);
    }
    return true;
  };
  char len_be[4];
  if (!read_exact(len_be, 4)) return Status::IoError("ssh-agent closed the connection");
  uint32_t len = 0;
  Reader(std::string_view(len_be, 4)).U32(&len);
  if (len == 0 || len > 256 * 1024) return Status::ProtocolError("ssh-agent: bad reply length");
  std::string reply(len, '\0');
  if (!read_exact(reply.data(), len)) return Status::IoError("ssh-agent closed the connection");
  if (static_cast<uint8_t>(reply[0]) != kSignResponse) {
    return Status::Rejected("ssh-agent refused to sign with " + std::string(kRsaSha2Algorithm));
  }
  Reader r(std::string_view(reply).substr(1));
  std::string_view sig_blob, alg, sig;
  if (!r.String(&sig_blob)) return Status::ProtocolError("ssh-agent: malformed signature");
  Reader sr(sig_blob);
  if (!sr.String(&alg) || !sr.String(&sig) || alg != kRsaSha2Algorithm) {
    return Status::ProtocolError("ssh-agent: signed with " + std::string(alg) + ", not " +
                                 std::string(kRsaSha2Algorithm));
  }
  return std::string(sig);
}

Result<std::unique_ptr<RsaSha2Signer>> RsaSha2Signer::Load(const std::string& path,
                                                           const std::string& passphrase) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::InvalidArgument("cannot read key " + path + ": " + std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();

  size_t begin = text.find(kOpensshBegin);
  if (begin != std::string::npos) {
    size_t body = begin + kOpensshBegin.size();
    size_t end = text.find(kOpensshEnd, body);
    std::string raw;
    if (end == std::string::npos || !Base64Decode(std::string_view(text).substr(body, end - body),
                                                  &raw)) {
      return Status::InvalidArgument("key " + path + ": malformed OpenSSH private key");
    }
    constexpr std::string_view kMagic("openssh-key-v1\0", 15);
    if (std::string_view(raw).substr(0, kMagic.size()) != kMagic) {
      return Status::InvalidArgument("key " + path + ": not an openssh-key-v1 key");
    }
    Reader r(std::string_view(raw).substr(kMagic.size()));
    std::string_view cipher, kdf, kdf_options, pub, priv, type;
    uint32_t nkeys = 0;
    if (!r.String(&cipher) || !r.String(&kdf) || !r.String(&kdf_options) || !r.U32(&nkeys) ||
        nkeys != 1 || !r.String(&pub) || !r.String(&priv)) {
      return Status::InvalidArgument("key " + path + ": malformed OpenSSH private key");
    }
    Reader pr(pub);
    if (!pr.String(&type)) {
      return Status::InvalidArgument("key " + path + ": malformed public key");
    }
    if (type != "ssh-rsa") return Status::NotFound("key " + path + " is " + std::string(type));
    if (cipher != "none") {
      return Status::InvalidArgument(
          "key " + path + " is an RSA key in OpenSSH format with a passphrase, which this build "
          "cannot decrypt for rsa-sha2 signatures (convert it with `ssh-keygen -p -m PEM -f " +
          path + "`, or use an ed25519 key)");
    }
    Reader k(priv);
    uint32_t check1 = 0, check2 = 0;
    std::string_view ktype, n, e, d, iqmp, p, q;
    if (!k.U32(&check1) || !k.U32(&check2) || check1 != check2 || !k.String(&ktype) ||
        ktype != "ssh-rsa" || !k.String(&n) || !k.String(&e) || !k.String(&d) ||
        !k.String(&iqmp) || !k.String(&p) || !k.String(&q)) {
      return Status::InvalidArgument("key " + path + ": malformed RSA private key");
    }
    auto pkey = RsaFromParts(n, e, d, iqmp, p, q);
    if (!pkey.ok()) return pkey.status().WithContext("key " + path);
    return std::unique_ptr<RsaSha2Signer>(new RsaSha2Signer(*pkey, AuthBlob(e, n)));
  }

  if (text.find("-----BEGIN ") == std::string::npos) {
    return Status::NotFound("key " + path + ": not a PEM or OpenSSH private key");
  }
  std::unique_ptr<BIO, void (*)(BIO*)> bio(
      BIO_new_mem_buf(text.data(), static_cast<int>(text.size())), BIO_free_all);
  // A null callback with a user pointer: OpenSSL takes the pointer as the passphrase.
  EVP_PKEY* pkey = PEM_read_bio_PrivateKey(
      bio.get(), nullptr, nullptr,
      const_cast<void*>(static_cast<const void*>(passphrase.empty() ? "" : passphrase.c_str())));
  if (pkey == nullptr) {
    return Status::InvalidArgument("key " + path + ": cannot read the PEM key (" +
                                   OpensslError() + "; wrong passphrase?)");
  }
  if (EVP_PKEY_get_base_id(pkey) != EVP_PKEY_RSA) {
    EVP_PKEY_free(pkey);
    return Status::NotFound("key " + path + " is not an RSA key");
  }
  BIGNUM* n = nullptr;
  BIGNUM* e = nullptr;
  if (EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_RSA_N, &n) <= 0 ||
      EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_RSA_E, &e) <= 0) {
    BN_free(n);
    BN_free(e);
    EVP_PKEY_free(pkey);
    return Status::Internal("key " + path + ": " + OpensslError());
  }
  std::string blob = AuthBlob(Mpint(BnBytes(e)), Mpint(BnBytes(n)));
  BN_free(n);
  BN_free(e);
  return std::unique_ptr<RsaSha2Signer>(new RsaSha2Signer(pkey, std::move(blob)));
}

RsaSha2Signer::~RsaSha2Signer() { EVP_PKEY_free(pkey_); }

Result<std::string> RsaSha2Signer::Sign(std::string_view data) const {
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> md(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  size_t len = 0;
  const auto* in = reinterpret_cast<const unsigned char*>(data.data());
  if (!md || EVP_DigestSignInit(md.get(), nullptr, EVP_sha512(), nullptr, pkey_) <= 0 ||
      EVP_DigestSign(md.get(), nullptr, &len, in, data.size()) <= 0) {
    return Status::Internal("rsa-sha2-512 signature: " + OpensslError());
  }
  std::string sig(len, '\0');
  if (EVP_DigestSign(md.get(), reinterpret_cast<unsigned char*>(sig.data()), &len, in,
                     data.size()) <= 0) {
    return Status::Internal("rsa-sha2-512 signature: " + OpensslError());
  }
  sig.resize(len);
  return sig;
}

}  // namespace trapline::ssh
