// Reads the game's vehicle and race state into an EvoRecord::Values, and runs respawn / restart.

namespace Telemetry
{
    int g_landmark = -1;      // the landmark the player last respawns at (start or checkpoint)
    uint g_checkpoints = 0;   // checkpoints passed this run
    string g_mapId = "";
    uint g_checkpointsTotal = 0;

    CSmArenaClient@ Playground()
    {
        return cast<CSmArenaClient>(GetApp().CurrentPlayground);
    }

    CSmPlayer@ Player(CSmArenaClient@ playground)
    {
        if (playground is null || playground.GameTerminals.Length == 0) {
            return null;
        }
        return cast<CSmPlayer>(playground.GameTerminals[0].GUIPlayer);
    }

    // False while there is no car to report (menus, loading, spectating nobody).
    bool Read(EvoRecord::Values@ v)
    {
        auto app = cast<CTrackMania>(GetApp());
        auto playground = Playground();
        auto player = Player(playground);
        auto vis = VehicleState::ViewingPlayerState();
        if (player is null || vis is null || playground.Arena is null) {
            return false;
        }
        auto script = cast<CSmScriptPlayer>(player.ScriptAPI);
        if (script is null) {
            return false;
        }
        v.race_time_ms = RaceTime(app, script);
        v.pos_x = vis.Position.x;
        v.pos_y = vis.Position.y;
        v.pos_z = vis.Position.z;
        v.dir_x = vis.Dir.x;
        v.dir_y = vis.Dir.y;
        v.dir_z = vis.Dir.z;
        v.vel_x = vis.WorldVel.x;
        v.vel_y = vis.WorldVel.y;
        v.vel_z = vis.WorldVel.z;
        v.speed_kmh = vis.FrontSpeed * 3.6f;
        v.gear = uint8(vis.CurGear);
        v.rpm = VehicleState::GetRPM(vis);
        v.gas = vis.InputGasPedal;
        v.brake = vis.InputBrakePedal;
        v.steer = vis.InputSteer;
        CountCheckpoints(playground, player);
        v.checkpoints = uint16(g_checkpoints);
        v.checkpoints_total = uint16(g_checkpointsTotal);
        auto sequence = playground.GameTerminals[0].UISequence_Current;
        v.finished = sequence == SGamePlaygroundUIConfig::EUISequence::Finish ? 1 : 0;
        v.wall_contact = 255;  // the game does not say
        v.wheel_fl = vis.FLGroundContactMaterial != EPlugSurfaceMaterialId::XXX_Null ? 1 : 0;
        v.wheel_fr = vis.FRGroundContactMaterial != EPlugSurfaceMaterialId::XXX_Null ? 1 : 0;
        v.wheel_rl = vis.RLGroundContactMaterial != EPlugSurfaceMaterialId::XXX_Null ? 1 : 0;
        v.wheel_rr = vis.RRGroundContactMaterial != EPlugSurfaceMaterialId::XXX_Null ? 1 : 0;
        return true;
    }

    // Race time in ms: the rules' clock in local play, the network clock online.
    int RaceTime(CTrackMania@ app, CSmScriptPlayer@ script)
    {
        auto rules = cast<CSmArenaRulesMode>(app.PlaygroundScript);
        if (rules !is null) {
            return int(rules.Now) - int(script.StartTime);
        }
        return int(app.Network.PlaygroundClientScriptAPI.GameTime) - int(script.StartTime);
    }

    // Checkpoints passed: +1 each time the player's respawn landmark becomes a new checkpoint;
    // back to 0 at the start block or the finish. The total is counted once per map.
    void CountCheckpoints(CSmArenaClient@ playground, CSmPlayer@ player)
    {
        auto landmarks = playground.Arena.MapLandmarks;
        if (playground.Map !is null && playground.Map.IdName != g_mapId) {
            g_mapId = playground.Map.IdName;
            g_checkpointsTotal = 0;
            array<int> linked;
            for (uint i = 0; i < landmarks.Length; i++) {
                auto waypoint = landmarks[i].Waypoint;
                if (waypoint is null || waypoint.IsFinish || waypoint.IsMultiLap) {
                    continue;
                }
                if (landmarks[i].Tag == "LinkedCheckpoint") {
                    if (linked.Find(landmarks[i].Order) >= 0) {
                        continue;  // linked checkpoints count once
                    }
                    linked.InsertLast(landmarks[i].Order);
                }
                g_checkpointsTotal++;
            }
        }
        int landmark = int(player.CurrentLaunchedRespawnLandmarkIndex);
        if (landmark == g_landmark || landmark < 0 || uint(landmark) >= landmarks.Length) {
            return;
        }
        g_landmark = landmark;
        auto waypoint = landmarks[landmark].Waypoint;
        if (waypoint is null || waypoint.IsFinish || waypoint.IsMultiLap) {
            g_checkpoints = 0;
        } else {
            g_checkpoints++;
        }
    }

    // A new run from the start line (local play: the rules script respawns the player).
    void Respawn()
    {
        auto rules = cast<CSmArenaRulesMode>(GetApp().PlaygroundScript);
        auto player = Player(Playground());
        if (rules is null || player is null) {
            warn("EVO RL: respawn needs a local race (no rules script or player); use the game's respawn key");
            return;
        }
        rules.RespawnPlayer(cast<CSmScriptPlayer>(player.ScriptAPI));
        g_checkpoints = 0;
    }

    // Back to the menu and into the same map again (a coroutine: it waits for the menu).
    void RestartMap()
    {
        auto app = cast<CTrackMania>(GetApp());
        if (app.RootMap is null) {
            return;
        }
        string map = app.RootMap.MapInfo.FileName;
        app.BackToMainMenu();
        while (!app.ManiaTitleControlScriptAPI.IsReady) {
            yield();
        }
        app.ManiaTitleControlScriptAPI.PlayMap(map, "", "");
        g_checkpoints = 0;
        g_landmark = -1;
    }
}
