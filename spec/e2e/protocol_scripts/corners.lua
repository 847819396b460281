local chat = require "chat"
chat.namespace("/members")   -- not anonymous: only a policy can let visitors in

chat.hook("connect/auth", function(ev)
    local case = ev.auth.case
    if case == "echo" then   -- the auth object, whole, back as the refusal's data
        return chat.reject("forbidden", "echo", { auth = ev.auth, namespace = ev.namespace })
    elseif case == "true" then return true
    elseif case == "table" then return { userId = ev.auth.as, accept = true }
    elseif case == "raise" then error("the policy broke")
    elseif case == "nobody" then return chat.accept("0123456789abcdef01234567")
    elseif case == "as" then return chat.accept(ev.auth.as)
    elseif case == "members-guest" and ev.namespace == "/members" then
        return chat.accept_anonymous()
    end
end, 10)

-- the connect policy after authentication: sees who, and the auth object whole
chat.hook("connect", function(ev)
    if ev.auth.app == "1.0" then
        return chat.reject("forbidden", "this version of the app is retired",
            { minimum = "2.0", user = ev.user and ev.user.id or chat.null,
              token = ev.auth.token ~= nil })
    end
end)

chat.hook("event/whoami", function(ev)
    return { user = ev.user and ev.user.id or "anonymous", namespace = ev.namespace }
end)
