"""Settings read from the environment as the README says."""

from medbuilder.settings import Settings


def test_the_llm_key_comes_from_openai_api_key_unless_medbuilders_own_is_set(monkeypatch):
    monkeypatch.delenv("MEDBUILDER_LLM_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert Settings().llm_api_key.get_secret_value() == "not-needed"
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-openai-variable")
    assert Settings().llm_api_key.get_secret_value() == "sk-from-openai-variable"
    monkeypatch.setenv("MEDBUILDER_LLM_API_KEY", "sk-medbuilder")
    assert Settings().llm_api_key.get_secret_value() == "sk-medbuilder"
    assert Settings(llm_api_key="given").llm_api_key.get_secret_value() == "given"
    assert "sk-medbuilder" not in repr(Settings())  # a secret is not printed
