-- script_pattern.c: string.find/match/gmatch/gsub keep Lua 5.4's pattern language, and a
-- pattern that would backtrack for seconds inside one C call fails with "pattern too complex"
-- instead of freezing the server (issue 10, item 10).
describe("patterns", function()
    it("match as Lua 5.4 does", function()
        assert.same({ 3, 5 }, { ("hello"):find("l+o") })
        assert.same({ 1, 5, "hello" }, { ("hello world"):find("^(%a+)") })
        assert.is_nil(("hello"):find("^l"))
        assert.same({ 7, 11 }, { ("a.b.c hello"):find("hello", 1, true) })
        assert.same({ 2, 2 }, { ("a.b"):find(".", 2, true) })
        assert.same({ 4, 5 }, { ("abcabc"):find("ab", -3) })
        assert.is_nil(("abc"):find("a", 10))
        assert.same({ 4, 3 }, { ("abc"):find("", 10 - 6) })
        assert.equal("key", ("key = value"):match("^(%w+)"))
        assert.same({ "key", "value" }, { ("key = value"):match("^(%w+)%s*=%s*(%w+)$") })
        assert.equal("trim me", ("  trim me  "):match("^%s*(.-)%s*$"))
        assert.same({ 1, 2 }, { ("abc"):match("()a()") })
        assert.same({ 2, "b" }, { ("abc"):match("()(b)") })
        assert.equal("(a(b)c)", ("x(a(b)c)y"):match("%b()"))
        assert.equal("THE", ("THE (quick) fox"):match("%f[%a]%a+"))
        assert.same({ 1, 4, "ab" }, { ("abab"):find("(ab)%1") })
        assert.equal("]", ("a]b"):match("[]]"))
        assert.equal("a-", ("a-b"):match("[a%-]+"))
        assert.equal("x", ("axb"):match("[^ab]"))
        assert.same({ "a", "b", "c" }, (function()
            local t = {}
            for w in ("a,b,,c"):gmatch("%a+") do t[#t + 1] = w end
            return t
        end)())
        assert.same({ "k1=v1", "k2=v2" }, (function()
            local t = {}
            for k, v in ("k1=v1, k2=v2"):gmatch("(%w+)=(%w+)") do t[#t + 1] = k .. "=" .. v end
            return t
        end)())
        local n = 0
        for _ in ("abc"):gmatch("") do n = n + 1 end
        assert.equal(4, n)
        assert.same({ "hello hello world world", 2 }, { ("hello world"):gsub("(%w+)", "%1 %1") })
        assert.same({ "HELLO world", 1 }, { ("hello world"):gsub("%w+", string.upper, 1) })
        assert.same({ "1 y=y", 2 }, { ("x=x y=y"):gsub("(%w)=(%w)", { x = 1 }) })
        assert.same({ "-a-b-c-", 4 }, { ("abc"):gsub("", "-") })
        assert.same({ "100%", 1 }, { ("100"):gsub("$", "%%") })
        assert.equal("bc", (("abc"):gsub("^a", "")))
        assert.has_error(function() ("x"):gsub("x", "%2") end)
        assert.has_error(function() ("x"):find("[a") end)
        assert.has_error(function() ("x"):find("%") end)
        assert.has_error(function() ("x"):gsub("x", "%z") end)
        assert.same({ 2, 3 }, { ("a\0b"):find("\0b") })
    end)

    it("a catastrophic pattern fails with 'pattern too complex' instead of running for seconds",
        function()
            local subject = ("a"):rep(27)
            local pattern = ("a*"):rep(9) .. "b"
            local ok, err = pcall(string.find, subject, pattern)
            assert.is_false(ok)
            assert.matches("pattern too complex", err)
            assert.matches("CHAT_LUA_PATTERN_STEPS", err)
            ok, err = pcall(function() return subject:match(pattern) end)
            assert.is_false(ok)
            assert.matches("pattern too complex", err)
            ok, err = pcall(function() return (subject:gsub(pattern, "")) end)
            assert.is_false(ok)
            assert.matches("pattern too complex", err)
            ok, err = pcall(function() for _ in subject:gmatch(pattern) do end end)
            assert.is_false(ok)
            assert.matches("pattern too complex", err)
            -- %b over a long unbalanced subject is quadratic: refused as well
            ok, err = pcall(string.find, ("("):rep(200000), "%b()")
            assert.is_false(ok)
            assert.matches("pattern too complex", err)
        end)

    it("ordinary work on a large subject stays within the limit", function()
        local text = ("word "):rep(100000)
        local _, n = text:gsub("%a+", "w")
        assert.equal(100000, n)
        assert.is_nil(text:find("%d"))
        assert.equal(("word"):rep(100000, " "), text:match("^%s*(.-)%s*$"))
    end)
end)
