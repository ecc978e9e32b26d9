"""The names we emit: the OpenTelemetry GenAI semantic conventions as of semantic-conventions
v1.41.0 (the last release that held them in the main repository; status "Development"),
and our own ``framework.*`` attributes.

Kept here as plain strings, not imported from ``opentelemetry-semantic-conventions``: that
package's GenAI names live in an ``_incubating`` module and follow the newest conventions,
which may rename them in any release; ours change only when we move the pinned version.
"""

from __future__ import annotations

SEMCONV_VERSION = "1.41.0"
SCHEMA_URL = f"https://opentelemetry.io/schemas/{SEMCONV_VERSION}"

# Operations (gen_ai.operation.name) and the spans they name.
INVOKE_AGENT = "invoke_agent"
EXECUTE_TOOL = "execute_tool"
CHAT = "chat"

OPERATION_NAME = "gen_ai.operation.name"
AGENT_NAME = "gen_ai.agent.name"
PROVIDER_NAME = "gen_ai.provider.name"
REQUEST_MODEL = "gen_ai.request.model"
RESPONSE_FINISH_REASONS = "gen_ai.response.finish_reasons"
USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
INPUT_MESSAGES = "gen_ai.input.messages"
OUTPUT_MESSAGES = "gen_ai.output.messages"
TOOL_NAME = "gen_ai.tool.name"
TOOL_TYPE = "gen_ai.tool.type"
TOOL_CALL_ID = "gen_ai.tool.call.id"
TOOL_CALL_ARGUMENTS = "gen_ai.tool.call.arguments"
TOOL_CALL_RESULT = "gen_ai.tool.call.result"
TOKEN_TYPE = "gen_ai.token.type"
ERROR_TYPE = "error.type"

# Ours.
JOB_ID = "framework.job.id"
JOB_NAME = "framework.job.name"
JOB_STATUS = "framework.job.status"
JOB_REQUESTER = "framework.job.requester"
JOB_UPDATES = "framework.job.updates"
JOB_STREAM_CHUNKS = "framework.job.stream_chunks"
RUNNER = "framework.runner"
WORKER = "framework.worker"

# Metrics.
JOB_DURATION = "framework.job.duration"
JOBS_IN_FLIGHT = "framework.jobs.in_flight"
TOKEN_USAGE = "gen_ai.client.token.usage"
OPERATION_DURATION = "gen_ai.client.operation.duration"
