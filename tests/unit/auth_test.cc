#include "coordinator/auth.h"

#include <doctest/doctest.h>

#include <set>
#include <string>

namespace trapline::coordinator::auth {
namespace {

// The cheapest Argon2id cost libsodium allows: the tests need the format, not the strength.
HashCost Cheap() { return {1, 8192}; }

TEST_CASE("roles are ordered and named") {
  CHECK(RoleAtLeast(Role::kAdmin, Role::kOperator));
  CHECK(RoleAtLeast(Role::kOperator, Role::kOperator));
  CHECK(RoleAtLeast(Role::kOperator, Role::kViewer));
  CHECK(!RoleAtLeast(Role::kViewer, Role::kOperator));
  CHECK(!RoleAtLeast(Role::kOperator, Role::kAdmin));
  for (Role r : {Role::kViewer, Role::kOperator, Role::kAdmin}) {
    auto back = ParseRole(RoleName(r));
    REQUIRE(back.ok());
    CHECK(*back == r);
  }
  CHECK(!ParseRole("root").ok());
  CHECK(!ParseRole("Admin").ok());
  CHECK(!ParseRole("").ok());
}

TEST_CASE("user names and the password policy") {
  CHECK(ValidateUserName("alice").ok());
  CHECK(ValidateUserName("ops.team-1_x@example.com").ok());
  CHECK(ValidateUserName(std::string(64, 'a')).ok());
  CHECK(!ValidateUserName(std::string(65, 'a')).ok());
  CHECK(!ValidateUserName("").ok());
  for (const char* bad : {"'; DROP TABLE users; --", "<script>", "$(reboot)", "../../etc/passwd",
                          "a b", "caf\xc3\xa9"}) {
    CHECK_MESSAGE(!ValidateUserName(bad).ok(), bad);
  }
  CHECK(!ValidateUserName(std::string("a\0b", 3)).ok());

  // The audit log's other actors cannot be user names (a new user's).
  CHECK(ValidateNewUserName("alice").ok());
  for (const char* reserved : {"api", "discovery", "cli:root", "coordinator:c1"}) {
    Status st = ValidateNewUserName(reserved);
    CHECK_MESSAGE(st.code() == StatusCode::kInvalidArgument, reserved);
    CHECK_MESSAGE(st.message().find("reserved") != std::string::npos, reserved);
  }
  CHECK(ValidateNewUserName("apiary").ok());
  CHECK(ValidateNewUserName("discovery2").ok());
  CHECK(!ValidateNewUserName("a b").ok());
  CHECK(!ParseNewUser(R"({"name": "api", "role": "admin", "password": "0123456789"})").ok());
  CHECK(ParseLogin(R"({"user": "api", "password": "x"})").ok());  // just not found

  CHECK(CheckPasswordPolicy("0123456789").ok());
  CHECK(CheckPasswordPolicy(std::string(1024, 'x')).ok());
  Status short_pw = CheckPasswordPolicy("hunter2xx");
  CHECK(short_pw.code() == StatusCode::kInvalidArgument);
  CHECK(short_pw.message().find("hunter2") == std::string::npos);  // never repeated
  CHECK(!CheckPasswordPolicy(std::string(1025, 'x')).ok());
  CHECK(!CheckPasswordPolicy(std::string("0123456789\0abc", 14)).ok());
}

TEST_CASE("Argon2id hashes verify the right password only") {
  REQUIRE(Init().ok());
  auto h = HashPassword("correct horse battery", Cheap());
  REQUIRE(h.ok());
  CHECK(h->rfind("$argon2id$", 0) == 0);
  CHECK(h->find("correct") == std::string::npos);
  CHECK(VerifyPassword(*h, "correct horse battery"));
  CHECK(!VerifyPassword(*h, "correct horse batterx"));
  CHECK(!VerifyPassword(*h, ""));
  // Salted: the same password twice gives two hashes.
  auto h2 = HashPassword("correct horse battery", Cheap());
  REQUIRE(h2.ok());
  CHECK(*h != *h2);
  // Only Argon2id PHC strings are accepted.
  CHECK(!VerifyPassword("", "x"));
  CHECK(!VerifyPassword("plaintext", "plaintext"));
  std::string argon2i = *h;
  argon2i.replace(0, 10, "$argon2i$");
  CHECK(!VerifyPassword(argon2i, "correct horse battery"));
  // A cheap hash needs rehashing with the default cost; a default one does not.
  CHECK(NeedsRehash(*h));
  auto strong = HashPassword("correct horse battery");
  REQUIRE(strong.ok());
  CHECK(!NeedsRehash(*strong));
  CHECK(VerifyPassword(*strong, "correct horse battery"));
  CHECK(DummyHash().rfind("$argon2id$", 0) == 0);
  CHECK(!VerifyPassword(DummyHash(), "correct horse battery"));
}

TEST_CASE("tokens: random, URL-safe, hashed, compared in full") {
  REQUIRE(Init().ok());
  std::set<std::string> seen;
  for (int i = 0; i < 100; ++i) {
    std::string t = RandomToken();
    CHECK(LooksLikeToken(t));
    seen.insert(t);
  }
  CHECK(seen.size() == 100);
  std::string t = RandomToken();
  std::string th = TokenHash(t);
  CHECK(th.size() == 64);
  CHECK(th == TokenHash(t));
  CHECK(th != TokenHash(t + "x"));
  CHECK(th.find(t) == std::string::npos);
  CHECK(!LooksLikeToken(""));
  CHECK(!LooksLikeToken(t + "A"));
  CHECK(!LooksLikeToken(std::string(43, '/')));
  CHECK(!LooksLikeToken("'; DROP TABLE sessions; --aaaaaaaaaaaaaaaaaa"));
}

TEST_CASE("session cookie: flags, clearing, parsing") {
  std::string c = SessionCookie("tok", 3600, false);
  CHECK(c == "trapline_session=tok; Path=/; Max-Age=3600; HttpOnly; SameSite=Strict");
  CHECK(SessionCookie("tok", 3600, true).ends_with("; Secure"));
  std::string cleared = ClearedSessionCookie(false);
  CHECK(cleared.find("trapline_session=;") == 0);
  CHECK(cleared.find("Max-Age=0") != std::string::npos);

  CHECK(CookieValue("trapline_session=abc", kSessionCookie) == "abc");
  CHECK(CookieValue("a=1; trapline_session=abc; b=2", kSessionCookie) == "abc");
  CHECK(CookieValue("a=1;trapline_session=\"abc\"", kSessionCookie) == "abc");
  CHECK(CookieValue("xtrapline_session=abc", kSessionCookie).empty());
  CHECK(CookieValue("trapline_sessionx=abc", kSessionCookie).empty());
  CHECK(CookieValue("", kSessionCookie).empty());
  CHECK(CookieValue("garbage;;=;", kSessionCookie).empty());
}

TEST_CASE("Origin must name the Host") {
  CHECK(OriginMatchesHost("http://127.0.0.1:8470", "127.0.0.1:8470"));
  CHECK(OriginMatchesHost("https://Panel.Example", "panel.example"));
  CHECK(OriginMatchesHost("https://panel.example:443", "panel.example"));
  CHECK(OriginMatchesHost("http://panel.example", "panel.example:80"));
  CHECK(!OriginMatchesHost("http://evil.example", "panel.example"));
  CHECK(!OriginMatchesHost("http://127.0.0.1:8471", "127.0.0.1:8470"));
  CHECK(!OriginMatchesHost("null", "127.0.0.1:8470"));
  CHECK(!OriginMatchesHost("ftp://panel.example", "panel.example"));
  CHECK(!OriginMatchesHost("http://panel.example.evil.example", "panel.example"));
  CHECK(!OriginMatchesHost("http://panel.example", ""));
  CHECK(!OriginMatchesHost("http://panel.example/path", "panel.example"));
}

TEST_CASE("source address without the port") {
  CHECK(SourceAddress("127.0.0.1:5432") == "127.0.0.1");
  CHECK(SourceAddress("[::1]:5432") == "::1");
  CHECK(SourceAddress("unix") == "unix");
}

TEST_CASE("request bodies: login, new user, user patch") {
  auto l = ParseLogin(R"({"user": "alice", "password": "pw"})");
  REQUIRE(l.ok());
  CHECK(l->user == "alice");
  CHECK(l->password == "pw");  // old short passwords still log in
  CHECK(!ParseLogin(R"({"user": "alice"})").ok());
  CHECK(!ParseLogin(R"({"user": "alice", "password": ""})").ok());
  CHECK(!ParseLogin(R"({"user": "alice", "password": 1})").ok());
  CHECK(!ParseLogin(R"({"user": "al ice", "password": "x"})").ok());
  CHECK(!ParseLogin(R"({"user": "alice", "password": "x", "remember": true})").ok());
  CHECK(!ParseLogin(R"({"user": "alice", "password": "a\u0000b"})").ok());
  CHECK(!ParseLogin("[1]").ok());

  auto u = ParseNewUser(R"({"name": "bob", "role": "operator", "password": "0123456789"})");
  REQUIRE(u.ok());
  CHECK(u->role == Role::kOperator);
  CHECK(!ParseNewUser(R"({"name": "bob", "password": "0123456789"})").ok());
  CHECK(!ParseNewUser(R"({"name": "bob", "role": "root", "password": "0123456789"})").ok());
  CHECK(!ParseNewUser(R"({"name": "bob", "role": "viewer", "password": "short"})").ok());
  CHECK(!ParseNewUser(R"({"name": "<script>", "role": "viewer", "password": "0123456789"})").ok());

  auto p = ParseUserPatch(R"({"disabled": true})");
  REQUIRE(p.ok());
  CHECK(p->disabled == true);
  CHECK(!p->role);
  CHECK(!p->password);
  CHECK(!ParseUserPatch("{}").ok());
  CHECK(!ParseUserPatch(R"({"name": "x"})").ok());
  CHECK(!ParseUserPatch(R"({"disabled": "yes"})").ok());
  CHECK(!ParseUserPatch(R"({"password": "short"})").ok());
  CHECK(ParseUserPatch(R"({"role": "admin", "password": "0123456789"})").ok());

  CHECK(CleanUserAgent("Mozilla/5.0\r\nX: y") == "Mozilla/5.0??X: y");
  CHECK(CleanUserAgent(std::string(1000, 'a')).size() == 256);
}

TEST_CASE("login limiter: blocks after N failures, backs off, forgets, stays bounded") {
  LoginLimiter::Options o;
  o.max_failures = 5;
  o.window_s = 60;
  o.block_s = 60;
  o.max_block_s = 600;
  o.max_entries = 100;
  LoginLimiter l(o);
  double t = 1000;
  for (int i = 0; i < 4; ++i) {
    CHECK(l.RetryAfter("10.0.0.1", "alice", t) == 0);
    l.Failure("10.0.0.1", "alice", t);
  }
  CHECK(l.RetryAfter("10.0.0.1", "alice", t) == 0);
  l.Failure("10.0.0.1", "alice", t);
  CHECK(l.RetryAfter("10.0.0.1", "alice", t) == doctest::Approx(60));
  // Blocked by address for any user; the user name's block stops only addresses that failed
  // for it themselves: alice at her own desk still signs in.
  CHECK(l.RetryAfter("10.0.0.2", "alice", t + 10) == 0);
  CHECK(l.RetryAfter("10.0.0.1", "bob", t + 10) == doctest::Approx(50));
  CHECK(l.RetryAfter("10.0.0.2", "bob", t + 10) == 0);
  // After the block: five more failures block twice as long.
  t += 61;
  CHECK(l.RetryAfter("10.0.0.1", "alice", t) == 0);
  for (int i = 0; i < 5; ++i) l.Failure("10.0.0.1", "alice", t);
  CHECK(l.RetryAfter("10.0.0.1", "alice", t) == doctest::Approx(120));
  // Failures spread wider than the window do not block.
  LoginLimiter slow(o);
  for (int i = 0; i < 20; ++i) {
    slow.Failure("10.0.0.3", "carol", 5000 + i * 61.0);
    CHECK(slow.RetryAfter("10.0.0.3", "carol", 5000 + i * 61.0) == 0);
  }
  // The back-off is capped.
  LoginLimiter capped(o);
  double c = 0;
  for (int round = 0; round < 10; ++round) {
    for (int i = 0; i < 5; ++i) capped.Failure("10.0.0.4", "dave", c);
    CHECK(capped.RetryAfter("10.0.0.4", "dave", c) <= 600);
    c += capped.RetryAfter("10.0.0.4", "dave", c) + 1;
  }
  // Success clears the user, not the address.
  LoginLimiter s(o);
  for (int i = 0; i < 5; ++i) s.Failure("10.0.0.5", "erin", 0);
  s.Success("10.0.0.6", "erin");
  CHECK(s.RetryAfter("10.0.0.6", "erin", 1) == 0);
  CHECK(s.RetryAfter("10.0.0.5", "frank", 1) > 0);
  // Distributed guessing: one address per attempt. Once the user name is blocked, each further
  // address gets one attempt and is then stopped for that user until the block ends (and a
  // clean address still goes through).
  LoginLimiter d(o);
  for (int i = 0; i < 5; ++i) d.Failure("10.1.0." + std::to_string(i), "gina", 100);
  CHECK(d.RetryAfter("10.1.0.0", "gina", 101) == doctest::Approx(59));  // failed for her
  CHECK(d.RetryAfter("10.1.0.0", "hugo", 101) == 0);                    // not its own block
  CHECK(d.RetryAfter("10.1.1.1", "gina", 101) == 0);                    // clean
  d.Failure("10.1.1.1", "gina", 101);
  CHECK(d.RetryAfter("10.1.1.1", "gina", 102) == doctest::Approx(58));
  // ... also after the window, while the block lasts (the block began before its failure).
  d.Failure("10.1.1.2", "gina", 140);
  CHECK(d.RetryAfter("10.1.1.2", "gina", 159) == doctest::Approx(1));
  CHECK(d.RetryAfter("10.1.1.2", "gina", 161) == 0);  // block over
  // Failures for the user well before its block do not stop an address during it.
  LoginLimiter e(o);
  e.Failure("10.2.0.1", "ivan", 0);
  for (int i = 0; i < 5; ++i) e.Failure("10.2.0." + std::to_string(10 + i), "ivan", 200);
  CHECK(e.RetryAfter("10.2.0.1", "ivan", 201) == 0);
  // Every address is still limited on its own: max_failures attempts in all per window.
  LoginLimiter f(o);
  for (int i = 0; i < 5; ++i) f.Failure("10.3.0.1", "user" + std::to_string(i), 0);
  CHECK(f.RetryAfter("10.3.0.1", "someone", 1) > 0);
  // A success from an address clears that address's failures for the user, and the user's.
  LoginLimiter g(o);
  for (int i = 0; i < 4; ++i) g.Failure("10.4.0.1", "judy", 0);
  g.Failure("10.4.0.2", "judy", 0);
  CHECK(g.RetryAfter("10.4.0.2", "judy", 1) > 0);
  g.Success("10.4.0.2", "judy");
  CHECK(g.RetryAfter("10.4.0.2", "judy", 1) == 0);
  CHECK(g.RetryAfter("10.4.0.1", "judy", 1) == 0);  // the user's block is gone

  // Bounded memory: many names never grow it past max_entries.
  LoginLimiter b(o);
  for (int i = 0; i < 10000; ++i) b.Failure("10.0.0.7", "user" + std::to_string(i), i * 0.001);
  CHECK(b.size() <= 100);
  // The address that guessed them all is still the most recently touched, so still blocked.
  CHECK(b.RetryAfter("10.0.0.7", "nobody", 10) > 0);
}

}  // namespace
}  // namespace trapline::coordinator::auth
