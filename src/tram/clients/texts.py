"""What `tram clients` says, in English and Vietnamese (`--lang en|vi`, default from LANG)."""

from __future__ import annotations

import os
from collections.abc import Mapping

__all__ = ["LANGUAGES", "default_lang", "say"]

LANGUAGES = ("en", "vi")

_EN = {
    "title": "Coding agents and chat UIs for Trạm at {url} (model {model}{window})",
    "window": ", context window {window} tokens",
    "no_window": "; context window unknown: pass --context N",
    "source": "From: {source}.",
    "key": "Every set-up reads the key from ${var}; create one for each person with "
           "`tram keys create --name NAME --model {model}`, then: export {var}=sk-…",
    "file_home": "File {path}:",
    "file_folder": "File {path} (with {env}):",
    "file_only": "File {path}:",
    "try": "Try it: {command}",
    "wrote": "wrote {path}",
    "kept": "kept {path} (it exists and differs; --force replaces it, keeping {backup})",
    "same": "unchanged {path}",
    "written_env": "Use the folder: {exports}",
    "key_from_env": "The key comes from the environment: export {var}=sk-…",
    "codex_head": "Trạm for Codex CLI: {url}, model {model} (wire_api responses)",
    "codex_tools": "Trạm's Responses API runs function tools: no hosted web search, no "
                   "sub-agent tool namespace (both refused today)",
    "codex_plugins": "No sync of OpenAI's curated plugins (github.com, chatgpt.com) at start",
    "codex_metadata": "Codex warns \"Model metadata for … not found\" for any model it does "
                      "not know; the set-up above gives it the context window it needs.",
    "claude_key": "The key: Claude Code runs apiKeyHelper (printenv {var}) and sends its "
                  "output as x-api-key and Bearer; Trạm's /v1/messages takes either.",
    "claude_window": "CLAUDE_CODE_MAX_CONTEXT_TOKENS={window} tells Claude Code the window of "
                     "a model it does not know (no \"assumes a context window of 1m tokens\" "
                     "warning), and CLAUDE_CODE_MAX_OUTPUT_TOKENS keeps its answers (32,000 "
                     "tokens otherwise) from crowding the window out: without it Claude Code "
                     "compacts every turn (\"Autocompact is thrashing\").",
    "claude_small_window": "The window ({window} tokens) is left unset: Claude Code estimates its "
                           "own first turn at ~12K tokens and, told a window under {least}, "
                           "refuses every prompt locally (\"Prompt is too long\"). It warns "
                           "that it assumes 1m tokens; the engine's own limit applies.",
    "qwen_key": "Qwen Code reads the key from ${var} (envKey); OPENAI_BASE_URL, "
                "OPENAI_API_KEY and OPENAI_MODEL also work for a one-off run.",
    "opencode_untested": "opencode is not driven by Trạm's tests (the other three are).",
    "webui_head": "Trạm for Open WebUI: {url} (docker run --env-file …)",
    "webui_key": "Open WebUI reads OPENAI_API_KEY (here from ${var}) on its first start "
                 "only; later changes go through Admin Settings → Connections.",
    "webui_window": "Open WebUI has no context-window setting for OpenAI connections: keep "
                    "chats with {model} under {window} tokens.",
    "no_clients": "no such client: {name} (known: {known})",
}

_VI = {
    "title": "Tác tử lập trình và giao diện chat cho Trạm tại {url} (mô hình {model}{window})",
    "window": ", cửa sổ ngữ cảnh {window} token",
    "no_window": "; chưa biết cửa sổ ngữ cảnh: thêm --context N",
    "source": "Nguồn: {source}.",
    "key": "Mọi cấu hình đều đọc khoá từ ${var}; tạo cho mỗi người một khoá bằng "
           "`tram keys create --name TÊN --model {model}`, rồi: export {var}=sk-…",
    "file_home": "Tệp {path}:",
    "file_folder": "Tệp {path} (với {env}):",
    "file_only": "Tệp {path}:",
    "try": "Chạy thử: {command}",
    "wrote": "đã ghi {path}",
    "kept": "giữ nguyên {path} (tệp đã có và khác; --force sẽ thay, lưu bản cũ ở {backup})",
    "same": "không đổi {path}",
    "written_env": "Dùng thư mục này: {exports}",
    "key_from_env": "Khoá lấy từ biến môi trường: export {var}=sk-…",
    "codex_head": "Trạm cho Codex CLI: {url}, mô hình {model} (wire_api responses)",
    "codex_tools": "Responses API của Trạm chạy công cụ dạng function: không có tìm kiếm web "
                   "của máy chủ, không có namespace công cụ của tác tử con (hiện bị từ chối)",
    "codex_plugins": "Không đồng bộ plugin tuyển chọn của OpenAI (github.com, chatgpt.com) "
                     "khi khởi động",
    "codex_metadata": "Codex cảnh báo \"Model metadata for … not found\" với mọi mô hình nó "
                      "không biết; cấu hình trên đã cho nó cửa sổ ngữ cảnh cần thiết.",
    "claude_key": "Khoá: Claude Code chạy apiKeyHelper (printenv {var}) và gửi kết quả dưới "
                  "dạng x-api-key và Bearer; /v1/messages của Trạm nhận cả hai.",
    "claude_window": "CLAUDE_CODE_MAX_CONTEXT_TOKENS={window} cho Claude Code biết cửa sổ của "
                     "một mô hình nó không biết (không còn cảnh báo \"assumes a context window "
                     "of 1m tokens\"), và CLAUDE_CODE_MAX_OUTPUT_TOKENS giữ câu trả lời (mặc "
                     "định 32.000 token) khỏi chiếm hết cửa sổ: thiếu nó, Claude Code nén ngữ "
                     "cảnh ở mọi lượt (\"Autocompact is thrashing\").",
    "claude_small_window": "Cửa sổ ({window} token) được để trống: Claude Code ước lượng lượt "
                           "đầu của chính nó khoảng 12K token và, nếu được báo cửa sổ dưới "
                           "{least}, sẽ từ chối mọi lời nhắc ngay trên máy (\"Prompt is too "
                           "long\"). Nó cảnh báo rằng nó giả định 1m token; giới hạn của "
                           "engine vẫn được áp dụng.",
    "qwen_key": "Qwen Code đọc khoá từ ${var} (envKey); OPENAI_BASE_URL, OPENAI_API_KEY và "
                "OPENAI_MODEL cũng dùng được cho một lần chạy.",
    "opencode_untested": "opencode không được các bài kiểm thử của Trạm chạy (ba công cụ kia "
                         "thì có).",
    "webui_head": "Trạm cho Open WebUI: {url} (docker run --env-file …)",
    "webui_key": "Open WebUI chỉ đọc OPENAI_API_KEY (ở đây lấy từ ${var}) ở lần khởi động "
                 "đầu tiên; về sau đổi trong Admin Settings → Connections.",
    "webui_window": "Open WebUI không có thiết lập cửa sổ ngữ cảnh cho kết nối OpenAI: giữ "
                    "các cuộc trò chuyện với {model} dưới {window} token.",
    "no_clients": "không có công cụ {name} (có: {known})",
}

_TEXTS: Mapping[str, Mapping[str, str]] = {"en": _EN, "vi": _VI}


def default_lang(environ: Mapping[str, str] | None = None) -> str:
    """Vietnamese when the locale says so (LC_ALL, LC_MESSAGES or LANG: vi_VN.UTF-8, vi…)."""
    env = os.environ if environ is None else environ
    for name in ("LC_ALL", "LC_MESSAGES", "LANG"):
        value = env.get(name)
        if value:
            return "vi" if value.lower().startswith("vi") else "en"
    return "en"


def say(lang: str, key: str, **values: object) -> str:
    return _TEXTS[lang][key].format(**values)
