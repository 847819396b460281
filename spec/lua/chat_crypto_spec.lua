-- chat.crypto: sha256, hmac_sha256, random_bytes, equals (constant time), hex.
local chat = require "chat"
local crypto = chat.crypto

describe("chat.crypto", function()
    it("sha256 is the standard digest (32 raw bytes)", function()
        assert.equal(32, #crypto.sha256("abc"))
        assert.equal("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            crypto.hex(crypto.sha256("abc")))
        assert.equal("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            crypto.hex(crypto.sha256("")))
    end)

    it("hmac_sha256 matches RFC 4231 test case 2", function()
        assert.equal("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
            crypto.hex(crypto.hmac_sha256("Jefe", "what do ya want for nothing?")))
    end)

    it("random_bytes returns that many bytes, different each time", function()
        assert.equal(0, #crypto.random_bytes(0))
        local a, b = crypto.random_bytes(16), crypto.random_bytes(16)
        assert.equal(16, #a)
        assert.not_equal(a, b)
        assert.has_error(function() crypto.random_bytes(-1) end)
        assert.has_error(function() crypto.random_bytes(65537) end)
    end)

    it("equals compares whole strings, also of different lengths", function()
        assert.is_true(crypto.equals("secret", "secret"))
        assert.is_false(crypto.equals("secret", "secreT"))
        assert.is_false(crypto.equals("secret", "secret2"))
        assert.is_true(crypto.equals("", ""))
    end)

    it("hex writes lowercase pairs", function()
        assert.equal("00ff10", crypto.hex("\0\255\16"))
        assert.equal("", crypto.hex(""))
    end)

    it("raises when given no string", function()
        assert.has_error(function() crypto.sha256() end)
        assert.has_error(function() crypto.hmac_sha256("key") end)
        assert.has_error(function() crypto.equals("a") end)
    end)
end)
