-- Runs busted inside chatd's own Lua, so specs use the real `chat` bindings:
--   CHAT_JWT_SECRET=<32+ bytes> CHAT_DATA_DIR=$(mktemp -d) CHAT_SCRIPTS_DIR=scripts \
--   CHAT_LUA_DIR=lua build/chatd --run spec/busted.lua spec/lua
-- spec/lua/support.lua holds the helpers the specs share.
package.path = "spec/lua/?.lua;" .. package.path
require("busted.runner")({ standalone = false })
