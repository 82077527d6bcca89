"""Message catalog (zh-CN and English) for API errors and the consoles' shared strings.

A message is looked up by key and formatted with named fields; the locale comes from the signed-in
user or the request's ``Accept-Language``. Keys missing in one language fall back to English, so a
message is never lost, only untranslated.
"""

from __future__ import annotations

from typing import Any, Literal

Locale = Literal["zh-CN", "en"]
LOCALES: tuple[Locale, ...] = ("zh-CN", "en")
DEFAULT_LOCALE: Locale = "zh-CN"

MESSAGES: dict[str, dict[str, str]] = {
    "en": {
        "auth.bad_credentials": "Wrong username or password.",
        "auth.rate_limited": "Too many failed sign-ins for this account or address; "
        "try again in {seconds} s.",
        "auth.busy": "Too many sign-ins at once; try again in {seconds} s.",
        "auth.not_authenticated": "Sign in first: send 'Authorization: Bearer <access token>'.",
        "auth.bad_token": "The access token is invalid or expired; sign in again or use your refresh token.",
        "auth.bad_refresh": "The refresh token is invalid, expired or already used; sign in again.",
        "auth.inactive": "This account is disabled; ask an administrator.",
        "auth.wrong_password": "The current password is wrong.",
        "role.denied": "Your role ({role}) may not {action}.",
        "field.denied": "Your role ({role}) may not change: {fields}. Ask an administrator.",
        "scope.not_found": "No {kind} '{id}' (or it is outside what you may see).",
        "consent.denied": "The resident's consent does not let you see the '{stream}' data; "
        "ask the care team to record consent for it.",
        "conflict.exists": "A {kind} with id '{id}' already exists; choose another id.",
        "conflict.in_use": "The {kind} '{id}' is still referenced ({detail}); remove those first.",
        "invalid.reference": "Unknown {field} '{value}': create it first or fix the id.",
        "invalid.value": "{field}: {reason}",
        "invalid.range": "'start' must be before 'end' and the range at most {days} days.",
        "invalid.tiers": "Tiers must be numbered 1, 2, 3... without gaps.",
        "invalid.target": "Unknown tier target '{target}'; use family, assigned_worker, station_on_duty, "
        "institution_on_duty or provider:<id>.",
        "invalid.config": "Gateway config field '{field}': {reason}.",
        "sim.not_simulated": "'{id}' is not a simulated resident; tester endpoints only drive simulations.",
        "sim.no_runner": "No simulation answered: {reason}. Start one with 'eldercare simulate run'.",
        "sim.unavailable": "Scoring is not available in this installation.",
        "alert.not_open": "Alert {id} is {state}: only an open alert can be acknowledged.",
        "alert.resolved": "Alert {id} is already resolved.",
        "limits.undone": "Change {id} of the limits was undone already.",
        "validation": "Invalid request: {errors}",
        "request.too_large": "The request body is larger than {limit} bytes.",
        "invalid.data": "A value in the request is out of range or not valid here; check numbers, "
        "dates and text.",
        "invalid.constraint": "{field}: the value is not allowed here.",
        "service.unavailable": "The service is busy or its database is unreachable; try again shortly.",
        "internal": "Internal error; it has been logged. Try again or tell the operator.",
    },
    "zh-CN": {
        "auth.bad_credentials": "用户名或密码错误。",
        "auth.rate_limited": "该账号或地址登录失败次数过多，请在 {seconds} 秒后重试。",
        "auth.busy": "同时登录的人太多，请在 {seconds} 秒后重试。",
        "auth.not_authenticated": "请先登录：发送 'Authorization: Bearer <访问令牌>'。",
        "auth.bad_token": "访问令牌无效或已过期，请重新登录或使用刷新令牌。",
        "auth.bad_refresh": "刷新令牌无效、已过期或已被使用，请重新登录。",
        "auth.inactive": "该账号已停用，请联系管理员。",
        "auth.wrong_password": "当前密码错误。",
        "role.denied": "您的角色（{role}）无权{action}。",
        "field.denied": "您的角色（{role}）无权修改：{fields}。请联系管理员。",
        "scope.not_found": "找不到{kind} '{id}'（或不在您的可见范围内）。",
        "consent.denied": "长者的授权不允许您查看“{stream}”数据；请联系照护团队登记授权。",
        "conflict.exists": "ID 为 '{id}' 的{kind}已存在，请换一个 ID。",
        "conflict.in_use": "{kind} '{id}' 仍被引用（{detail}），请先删除这些引用。",
        "invalid.reference": "未知的 {field} '{value}'：请先创建或更正 ID。",
        "alert.not_open": "告警 {id} 当前状态为 {state}：只有未处理的告警可以确认。",
        "alert.resolved": "告警 {id} 已经解决。",
        "limits.undone": "阈值变更 {id} 已经撤销过了。",
        "invalid.value": "{field}：{reason}",
        "invalid.range": "'start' 必须早于 'end'，且范围不超过 {days} 天。",
        "invalid.tiers": "升级层级必须按 1、2、3… 连续编号。",
        "invalid.target": "未知的通知对象 '{target}'；可用 family、assigned_worker、station_on_duty、"
        "institution_on_duty 或 provider:<id>。",
        "invalid.config": "网关配置字段 '{field}'：{reason}。",
        "sim.not_simulated": "'{id}' 不是模拟长者；测试接口只能驱动模拟。",
        "sim.no_runner": "没有模拟程序响应：{reason}。请用 'eldercare simulate run' 启动模拟。",
        "sim.unavailable": "此安装不提供评分功能。",
        "validation": "请求无效：{errors}",
        "request.too_large": "请求内容超过 {limit} 字节。",
        "invalid.data": "请求中的某个值超出范围或无效，请检查数字、日期和文本。",
        "invalid.constraint": "{field}：此处不允许该值。",
        "service.unavailable": "服务繁忙或数据库暂时无法连接，请稍后重试。",
        "internal": "内部错误，已记录。请重试或联系运维人员。",
    },
}

# Words used inside messages (resource kinds, actions), per locale.
WORDS: dict[str, dict[str, str]] = {
    "zh-CN": {
        "resident": "长者",
        "site": "场所",
        "gateway": "网关",
        "sensor": "传感器",
        "provider": "服务机构",
        "user": "用户",
        "policy": "升级策略",
        "shift": "值班",
        "family_link": "家属关联",
        "alert": "告警",
        "activity": "活动",
        "bed": "床垫",
        "bathroom": "卫生间",
        "vitals": "生命体征",
        "manage the registry": "管理登记信息",
        "view the registry": "查看登记信息",
        "view sites and devices": "查看场所和设备",
        "drive simulations": "驱动模拟",
        "change residents": "修改长者信息",
        "view the care team and family links": "查看照护团队和家属关联",
        "family": "家属",
        "care_worker": "护理员",
        "tester": "测试员",
        "admin": "管理员",
    },
    "en": {},
}


def negotiate(accept_language: str | None) -> Locale:
    """Pick zh-CN or en from an ``Accept-Language`` header (first supported language wins)."""
    if not accept_language:
        return DEFAULT_LOCALE
    for part in accept_language.split(","):
        tag = part.split(";")[0].strip().lower()
        if tag.startswith("zh"):
            return "zh-CN"
        if tag.startswith("en"):
            return "en"
    return DEFAULT_LOCALE


def word(w: str, locale: str) -> str:
    return WORDS.get(locale, {}).get(w, w)


def t(key: str, locale: str = DEFAULT_LOCALE, **fields: Any) -> str:
    """The message ``key`` in ``locale``, with fields filled in (resource kinds translated)."""
    template = MESSAGES.get(locale, {}).get(key) or MESSAGES["en"].get(key) or key
    if "kind" in fields:
        fields["kind"] = word(str(fields["kind"]), locale)
    for name in ("stream", "action", "role"):
        if name in fields:
            fields[name] = word(str(fields[name]), locale)
    try:
        return template.format(**fields)
    except (KeyError, IndexError):
        return template
