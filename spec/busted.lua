-- Runs busted inside chatd's own Lua, so specs use the real `chat` bindings:
--   CHAT_DATA_DIR=$(mktemp -d) build/chatd --run spec/busted.lua spec/lua
require("busted.runner")({ standalone = false })
