namespace Atelier.Server.Jobs;

/// <summary>This node, as the job scheduler knows it.</summary>
/// <param name="Name">Its name in the topology (the machine's name).</param>
/// <param name="Slots">How many jobs it trains at once (<c>defaults.training_slots</c>).</param>
public sealed record TrainingNode(string Name, int Slots);
