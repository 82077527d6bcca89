"""Words for inactivity alerts, in English and zh-CN, for care workers who read Chinese first.

Kept apart from the detector so wording can change (and be reviewed by care staff) without
touching the logic. Every function takes plain numbers and returns ``(english, chinese)``.
"""

from __future__ import annotations

ROOM_EN = {
    "bed": "in bed",
    "bedroom": "in the bedroom",
    "bathroom": "in the bathroom",
    "kitchen": "in the kitchen",
    "living": "in the living room",
    "hall": "in the hall",
    "away": "away from home",
}
ROOM_ZH = {
    "bed": "在床上",
    "bedroom": "在卧室",
    "bathroom": "在卫生间",
    "kitchen": "在厨房",
    "living": "在客厅",
    "hall": "在门厅",
    "away": "外出",
}
SENSOR_EN = {"pir": "motion sensor", "door": "door contact", "bed": "bed sensor", "plug": "smart plug"}
SENSOR_ZH = {"pir": "人体感应器", "door": "门磁", "bed": "床垫传感器", "plug": "智能插座"}


def room_en(room: str) -> str:
    return ROOM_EN.get(room, f"in the {room}" if room else "at home")


def room_zh(room: str) -> str:
    return ROOM_ZH.get(room, f"在{room}" if room else "在家")


def dur_en(seconds: float) -> str:
    """``2 h 10 min``, ``25 min``: what a care worker reads at a glance."""
    m = max(0, round(seconds / 60))
    h, m = divmod(m, 60)
    if h and m:
        return f"{h} h {m} min"
    return f"{h} h" if h else f"{m} min"


def dur_zh(seconds: float) -> str:
    m = max(0, round(seconds / 60))
    h, m = divmod(m, 60)
    if h and m:
        return f"{h}小时{m}分钟"
    return f"{h}小时" if h else f"{m}分钟"


def clock(seconds_of_day: float) -> str:
    s = int(seconds_of_day) % 86_400
    return f"{s // 3600:02d}:{(s % 3600) // 60:02d}"


def inactivity(room: str, observed: float, expected: float, hour: int, learned: bool) -> tuple[str, str]:
    usual_en = "usually under" if learned else "new home, allowing up to"
    usual_zh = "这个时段通常不超过" if learned else "新用户，暂按最长"
    if room == "bed":
        en = f"no movement for {dur_en(observed)} while in bed at {hour:02d}:00 hours"
        zh = f"在床上已{dur_zh(observed)}没有任何动静（{hour:02d}点时段）"
    else:
        en = f"no movement for {dur_en(observed)} {room_en(room)}"
        zh = f"{room_zh(room)}已{dur_zh(observed)}没有活动"
    return (
        f"{en}; {usual_en} {dur_en(expected)} at this hour",
        f"{zh}；{usual_zh}{dur_zh(expected)}",
    )


def bathroom(observed: float, expected: float, learned: bool) -> tuple[str, str]:
    usual_en = "usually out within" if learned else "new home, allowing up to"
    usual_zh = "这个时段通常在" if learned else "新用户，暂按"
    return (
        f"in the bathroom for {dur_en(observed)} with little movement; {usual_en} {dur_en(expected)}",
        f"在卫生间已{dur_zh(observed)}，几乎没有活动；{usual_zh}{dur_zh(expected)}内出来",
    )


def no_wake(now_s: float, usual_s: float, latest_s: float, learned: bool) -> tuple[str, str]:
    """Times are seconds after local midnight."""
    if learned:
        return (
            f"not up yet at {clock(now_s)}: still in bed; usually up at about {clock(usual_s)}, "
            f"by {clock(latest_s)} at the latest",
            f"{clock(now_s)}仍未起床（还在床上）；平时约{clock(usual_s)}起床，最晚不超过{clock(latest_s)}",
        )
    return (
        f"not up yet at {clock(now_s)}: still in bed (new home: no usual wake time learned yet)",
        f"{clock(now_s)}仍未起床（还在床上）；新用户，尚未掌握起床规律",
    )


def night_wandering(left_s: float, observed: float, expected: float, learned: bool) -> tuple[str, str]:
    if learned:
        tail_en = f"at this hour outings usually end within {dur_en(expected)}"
        tail_zh = f"这个时段外出通常{dur_zh(expected)}内回来"
    else:
        tail_en = "does not usually go out at night"
        tail_zh = "平时夜间不外出"
    return (
        f"went out at night ({clock(left_s)}) and has not come back for {dur_en(observed)}; {tail_en}",
        f"夜间（{clock(left_s)}）外出，已{dur_zh(observed)}未归；{tail_zh}",
    )


def night_hall(observed: float, expected: float) -> tuple[str, str]:
    return (
        f"out of bed at night and last seen in the hall {dur_en(observed)} ago, nothing since "
        f"(may have gone out); usually back within {dur_en(expected)}",
        f"夜间离床，{dur_zh(observed)}前最后出现在门厅，之后没有任何动静（可能已外出）；"
        f"通常{dur_zh(expected)}内回来",
    )


def away_long(left_s: float, observed: float, expected: float) -> tuple[str, str]:
    return (
        f"went out at {clock(left_s)} and has not come back (no movement at home for {dur_en(observed)}); "
        f"outings at this hour usually end within {dur_en(expected)}",
        f"{clock(left_s)}出门后一直未归（家中已{dur_zh(observed)}无活动）；这个时段外出通常{dur_zh(expected)}内回来",
    )


def device_silent(kind: str, room: str, active_hours: int, usual_hours: int) -> tuple[str, str]:
    return (
        f"the {SENSOR_EN.get(kind, kind)} {room_en(room)} has sent nothing during {active_hours} h of "
        f"activity elsewhere in the home (usually reports within {usual_hours} h): a device problem, "
        "not a silent home; check its battery and placement",
        f"{room_zh(room)}的{SENSOR_ZH.get(kind, kind)}在家中其他设备有活动的{active_hours}小时内没有任何上报"
        f"（通常{usual_hours}小时内会上报）：这是设备问题，不是家中无人活动；请检查电池和安装位置",
    )


def sensor_missed_uses(room: str, missed: int, seen_share: float) -> tuple[str, str]:
    pct = round(100 * seen_share)
    return (
        f"the motion sensor {room_en(room)} did not see the last {missed} times someone used the bed, a "
        f"door or an appliance there (it usually sees {pct} % of them): a device problem, not a silent "
        "home; check its battery and placement",
        f"{room_zh(room)}的人体感应器在最近{missed}次有人使用该处的床、门或电器时都没有触发"
        f"（通常能感应到{pct}%）：这是设备问题，不是家中无人活动；请检查电池和安装位置",
    )


def gateway_silent(observed: float, expected: float) -> tuple[str, str]:
    return (
        f"no heartbeat from the home gateway for {dur_en(observed)} (usually every {dur_en(expected)}): "
        "the home cannot be watched; check its power and network",
        f"家庭网关已{dur_zh(observed)}没有心跳（通常每{dur_zh(expected)}一次）：目前无法监护，请检查电源和网络",
    )


def sensor_suspect(kind: str, room: str, ctx: str, observed: float, silent_hours: int) -> tuple[str, str]:
    return (
        f"no movement seen for {dur_en(observed)} {room_en(ctx)}, but the {SENSOR_EN.get(kind, kind)} "
        f"{room_en(room)} has sent nothing for {silent_hours} h of activity elsewhere: most likely that "
        "sensor has failed (check it); if unsure, check on the resident",
        f"{room_zh(ctx)}已{dur_zh(observed)}未见活动，但{room_zh(room)}的{SENSOR_ZH.get(kind, kind)}"
        f"在其他设备有活动的{silent_hours}小时内没有任何上报：很可能是该传感器故障（请检查）；如不确定，请查看老人情况",
    )
