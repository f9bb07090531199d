"""Triton's repository API (load, unload) with the admin key, plus the calls the gates make
(inference, with the gateway key)."""

from __future__ import annotations

from tritonclient.utils import InferenceServerException

from facefuse.models_admin.errors import AdminCredentialError, ModelAdminError
from facefuse.server.triton import GRPC_ADMIN_KEY_HEADER
from facefuse.triton_client import keyed_client


class TritonAdmin:
    def __init__(self, url: str, admin_key: str | None, gateway_key: str | None):
        self.url = url
        self.client = keyed_client(url, gateway_key)
        self.headers = {GRPC_ADMIN_KEY_HEADER: admin_key} if admin_key else None

    def close(self) -> None:
        self.client.close()

    def _repository_call(self, what: str, call) -> None:
        try:
            call()
        except InferenceServerException as exc:
            message = exc.message() or str(exc)
            # Triton 2.51: "This protocol is restricted, expecting header ..." (status UNAVAILABLE).
            if "protocol is restricted" in message:
                raise AdminCredentialError(
                    f"Triton at {self.url} refused to {what}: {message}. Set FACEFUSE_TRITON_ADMIN_KEY to the "
                    "server's admin key (`facefuse serve` prints where it comes from)") from None
            raise ModelAdminError(f"Triton at {self.url} could not {what}: {message}") from None

    def check_access(self) -> None:
        """AdminCredentialError unless Triton takes this admin key (a read of the
        repository index): a command checks before it changes anything."""
        self._repository_call("list its model repository", lambda: self.client.get_model_repository_index(headers=self.headers))

    def load(self, model: str) -> None:
        """Load, or reload from the repository: the loaded model serves until the new one is ready."""
        self._repository_call(f"load {model}", lambda: self.client.load_model(model, headers=self.headers))

    def unload(self, model: str) -> None:
        self._repository_call(f"unload {model}", lambda: self.client.unload_model(model, headers=self.headers))

    def ready(self, model: str, version: str = "") -> bool:
        try:
            return bool(self.client.is_model_ready(model, version))
        except InferenceServerException:
            return False

    def infer(self, model: str, inputs, outputs):
        return self.client.infer(model, inputs, outputs=outputs, client_timeout=60.0)
