"""Every text of the board and its login page, in Portuguese (the default) and English: one table, so
that a label cannot exist in one language only."""
from __future__ import annotations

LANGUAGES = ("pt", "en")
DEFAULT = "pt"

# key: (português, English)
LABELS: dict[str, tuple[str, str]] = {
    "title": ("Supervisão", "Supervisor"),
    "login_title": ("Entrar na supervisão", "Sign in to the supervisor's board"),
    "user": ("Usuário", "User"),
    "password": ("Senha", "Password"),
    "sign_in": ("Entrar", "Sign in"),
    "sign_out": ("Sair", "Sign out"),
    "bad_login": ("Usuário ou senha inválidos.", "Wrong user or password."),
    "too_many": ("Muitas tentativas deste endereço. Tente de novo em {seconds} s.",
                 "Too many attempts from this address. Try again in {seconds} s."),
    "refused_origin": ("Pedido recusado: veio de outra origem.", "Request refused: it came from another origin."),
    "signed_in_as": ("Conectado como", "Signed in as"),
    "language": ("Idioma", "Language"),
    "live": ("ao vivo", "live"),
    "reconnecting": ("reconectando…", "reconnecting…"),
    "no_script": ("Esta página precisa de JavaScript.", "This page needs JavaScript."),
    "link": ("Link", "Link"),
    "link_down": ("PABX fora do ar", "PABX link down"),
    "groups": ("Grupos", "Groups"),
    "group": ("Grupo", "Group"),
    "no_groups": ("Nenhum grupo com agentes ou chamadas.", "No group with agents or calls."),
    "agents": ("Agentes", "Agents"),
    "no_agents": ("Nenhum ramal em serviço.", "No device in service."),
    "waiting": ("Em espera", "Waiting"),
    "longest": ("maior espera", "longest"),
    "answered": ("Atendidas hoje", "Answered today"),
    "abandoned": ("Abandonadas hoje", "Abandoned today"),
    "service_level": ("Nível de serviço ({seconds} s)", "Service level ({seconds} s)"),
    "device": ("Ramal", "Device"),
    "agent": ("Agente", "Agent"),
    "state": ("Estado", "State"),
    "time_in_state": ("Tempo no estado", "Time in state"),
    "reason": ("Motivo", "Reason"),
    "call": ("Chamada", "Call"),
    "no_call": ("sem chamada", "no call"),
    "ani": ("Origem", "Caller"),
    "dnis": ("Destino", "Dialled"),
    "duration": ("Duração", "Duration"),
    "state_logged_off": ("Deslogado", "Logged off"),
    "state_logged_on": ("Logado", "Logged on"),
    "state_ready": ("Disponível", "Ready"),
    "state_not_ready": ("Em pausa", "Paused"),
    "state_work_after_call": ("Pós-atendimento", "After-call work"),
    "state_busy": ("Ocupado", "Busy"),
    "call_alerting": ("Tocando", "Ringing"),
    "call_connected": ("Em conversa", "Talking"),
    "call_held": ("Em espera", "On hold"),
    "call_initiated": ("Discando", "Dialling"),
    "call_queued": ("Na fila", "Queued"),
    "call_failed": ("Falhou", "Failed"),
    "call_null": ("—", "—"),
    "action_ready": ("Disponível", "Ready"),
    "action_pause": ("Pausa", "Pause"),
    "action_logoff": ("Deslogar", "Log off"),
    "action_hangup": ("Encerrar chamada", "End call"),
    "action_listen": ("Ouvir", "Listen"),
    "action_whisper": ("Sussurrar", "Whisper"),
    "action_barge": ("Intervir", "Barge in"),
    "confirm_ready": ("Deixar {agent} ({device}) disponível?", "Make {agent} ({device}) ready?"),
    "confirm_pause": ("Colocar {agent} ({device}) em pausa?", "Pause {agent} ({device})?"),
    "confirm_logoff": ("Deslogar {agent} ({device})?", "Log {agent} ({device}) off?"),
    "confirm_hangup": ("Encerrar a chamada de {agent} ({device})?", "End the call of {agent} ({device})?"),
    "confirm_listen": ("Ouvir a chamada de {agent} ({device})?", "Listen to the call of {agent} ({device})?"),
    "confirm_whisper": ("Sussurrar para {agent} ({device})?", "Whisper to {agent} ({device})?"),
    "confirm_barge": ("Entrar na chamada de {agent} ({device})?", "Barge into the call of {agent} ({device})?"),
    "pause_reason": ("Motivo da pausa", "Pause reason"),
    "default_reason": ("(padrão)", "(default)"),
    "my_phone": ("Meu ramal", "My phone"),
    "confirm": ("Confirmar", "Confirm"),
    "cancel": ("Cancelar", "Cancel"),
    "done": ("Feito", "Done"),
    "failed": ("Não foi possível", "Could not do it"),
    "result": ("resultado", "result"),
    # what a SmartCTI result code means to a supervisor (actions.MESSAGES says it in the API's English)
    "result_1": ("nenhum agente logado neste ramal, ou o PABX recusou o agente",
                 "no agent is logged on this device, or the PABX refused the agent"),
    "result_2": ("falta o ramal de onde ouvir", "no phone to listen from"),
    "result_3": ("nada a fazer no estado atual do ramal", "nothing to do in the device's present state"),
    "result_5": ("a chamada não está mais neste ramal", "the call is not on this device any more"),
    "result_18": ("o PABX não conhece este ramal", "the PABX does not know this device"),
    "result_19": ("o ramal não tem chamada", "the device has no call"),
    "result_21": ("o PABX deste link não oferece isso", "this link's PABX does not offer it"),
    "result_22": ("o PABX está fora do ar", "the PABX link is down"),
    "result_24": ("o PABX não respondeu a tempo", "the PABX did not answer in time"),
    "result_99": ("erro interno; veja o log do gateway", "internal error; see the gateway's log"),
    "dash": ("—", "—"),
}


def language(value: str | None) -> str | None:
    """``value`` when it names a language of the table, else None."""
    return value if value in LANGUAGES else None


def labels(lang: str) -> dict[str, str]:
    index = LANGUAGES.index(lang) if lang in LANGUAGES else 0
    return {key: texts[index] for key, texts in LABELS.items()}
