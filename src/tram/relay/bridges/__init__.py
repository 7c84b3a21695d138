"""Routes served over an engine's chat completions when the engine lacks them: OpenAI's
Responses API and Anthropic's Messages API. Each bridge is a request translation (to a chat
payload, which then takes chat's whole path: images, thinking, usage) and a `ChatShape`: the
chat answer and chat chunks turned into the route's own answer and typed events."""

__all__: list[str] = []
