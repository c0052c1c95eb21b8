// EVO RL for TMInterface 2 (TrackMania Nations Forever): lock-step control over TCP on 127.0.0.1.
// Protocol: evo_rl/games/tmnf/protocol.py and docs/games.md. The port is the variable evorl_port
// (`evo-rl game tmnf launch` sets one per instance). Installed by `evo-rl game tmnf install-plugin`,
// which puts the generated protocol code at the mark below.

// @@EVO_RL_PROTOCOL@@

PluginInfo@ GetPluginInfo()
{
    PluginInfo info;
    info.Name = "EVO RL";
    info.Author = "EVO RL";
    info.Version = "1";
    info.Description = "Lock-step control for EVO RL: one step per request, rewind to the race start";
    return info;
}

Net::Socket@ g_server = null;
Net::Socket@ g_client = null;
SimulationState@ g_start = null;   // the state at race time 0: restart is a rewind to it
Evo::Request g_request;
Evo::State g_state;
int g_stepMs = 50;                 // game time between two requests (20 actions per second)
uint g_timeoutMs = 10000;          // a client silent this long is dropped; the game runs on
bool g_owe = false;                // a STEP was applied: its state is written at the next control step
bool g_loading = false;            // a LOAD_MAP was asked: its state is written at the new map's race start
uint g_loadStart = 0;
uint g_loadTimeoutMs = 120000;     // a map that has not started by then frees the client

void Main()
{
    RegisterVariable("evorl_port", 9200);
    RegisterVariable("evorl_step_ms", 50);
    @g_server = Net::Socket();
    g_server.Listen("127.0.0.1", uint16(GetVariableDouble("evorl_port")));
}

// Waits for REQUEST_SIZE bytes; false after the timeout (the client is dropped).
bool WaitRequest()
{
    uint start = Time::Now;
    while (g_client.Available < int(Evo::REQUEST_SIZE)) {
        if (Time::Now - start > g_timeoutMs) return false;
    }
    return Evo::ReadRequest(g_client, g_request);
}

// Reads the map name that follows a LOAD_MAP request and asks TMInterface to load it.
void LoadMap(uint n)
{
    string name;
    name.resize(n);
    for (uint k = 0; k < n; k++) name[k] = g_client.ReadUint8();
    @g_start = null;
    g_loading = true;
    g_loadStart = Time::Now;
    ExecuteCommand("map " + name);
}

void Answer(SimulationManager@ sim)
{
    auto@ dyna = sim.Dyna.CurrentState;
    vec3 pos = dyna.Location.Position;
    vec3 fwd = dyna.Location.Rotation.z;   // the car's forward axis
    vec3 vel = dyna.LinearSpeed;
    g_state.seq = g_request.seq;
    g_state.step = uint(sim.RaceTime / g_stepMs);
    g_state.race_time_ms = sim.RaceTime;
    g_state.pos_x = pos.x; g_state.pos_y = pos.y; g_state.pos_z = pos.z;
    g_state.yaw = Math::Atan2(fwd.z, fwd.x);
    g_state.vel_x = vel.x; g_state.vel_y = vel.y; g_state.vel_z = vel.z;
    g_state.speed_kmh = Math::Dot(vel, fwd) * 3.6f;
    g_state.gear = uint8(sim.SceneVehicleCar.CarEngine.Gear);
    g_state.rpm = sim.SceneVehicleCar.CarEngine.ActualRPM;
    g_state.checkpoints = uint16(sim.PlayerInfo.CurCheckpointCount);
    g_state.checkpoints_total = uint16(GetCurrentChallenge().NbCheckpoints);
    g_state.finished = sim.PlayerInfo.RaceFinished ? 1 : 0;
    g_state.wall_contact = 255;    // unknown in TMNF
    uint8 ground = 0;
    for (uint k = 0; k < 4; k++) {
        if (sim.Wheels[k].RTState.HasGroundContact) ground |= uint8(1 << k);
    }
    g_state.wheels_ground = ground;
    g_state.wheels_sliding = 0;
    g_state.frame_height = 0;      // frames: not sent by this version of the plugin
    g_state.frame_width = 0;
    Evo::WriteState(g_client, g_state);
}

void OnRunStep(SimulationManager@ sim)
{
    if (!sim.InRace || sim.RaceTime < 0) return;
    if (sim.RaceTime == 0) @g_start = sim.SaveState();
    if (g_loading) {
        if (g_start is null) {   // the old map still runs: not loaded yet, or not found
            if (Time::Now - g_loadStart > g_loadTimeoutMs) { g_loading = false; @g_client = null; }
            return;
        }
        g_loading = false;
        Answer(sim);             // the new map's race start
    }
    if (g_client is null) {
        @g_client = g_server.Accept(0);
        if (g_client is null) return;
        g_stepMs = int(GetVariableDouble("evorl_step_ms"));
    }
    if (sim.RaceTime % g_stepMs != 0) return;
    if (g_owe) { Answer(sim); g_owe = false; }
    // the race holds here until the client's next request: one control step of game time per request
    while (true) {
        if (!WaitRequest()) { @g_client = null; return; }
        uint16 r = g_request.request;
        if (r == Evo::STEP) {
            sim.SetInputState(InputType::Up, g_request.a > 0.5f ? 1 : 0);
            sim.SetInputState(InputType::Down, g_request.b > 0.5f ? 1 : 0);
            sim.SetInputState(InputType::Steer, int(g_request.c * 65536));
            g_owe = true;
            return;
        }
        if ((r == Evo::RESTART || r == Evo::GIVE_UP) && g_start !is null) sim.RewindToState(g_start);
        if (r == Evo::SET_SPEED) SetSpeed(g_request.a);
        if (r == Evo::SET_TIMEOUT) g_timeoutMs = uint(g_request.a * 1000);
        if (r == Evo::LOAD_MAP) { LoadMap(g_request.flags); return; }
        Answer(sim);
    }
}

void OnSimulationStep(SimulationManager@ sim, bool userCancelled) {}
